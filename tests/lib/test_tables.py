"""The table declarations equal what the migrations create, and every schema derives from them."""

from __future__ import annotations

import asyncpg
import pytest

from ats_pipelines.lib.tables import (
    BOOK_METRICS,
    CANDLES,
    ORDER_BOOK_SNAPSHOTS,
    TABLES,
    TRADES,
    Table,
)

_COLUMNS = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable
FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_KEY = """
SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
  ON true JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n
"""


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
async def test_database_columns_equal_the_declaration(
    conn: asyncpg.Connection, table: Table
) -> None:
    actual = [(r["name"], r["type"], r["nullable"]) for r in await conn.fetch(_COLUMNS, table.name)]
    declared = [(c.name, c.pg_type, c.nullable) for c in table.columns]
    assert actual == declared
    assert tuple(r["attname"] for r in await conn.fetch(_KEY, table.name)) == table.key


def test_derived_schemas_come_from_the_declaration() -> None:
    from ats_pipelines.cache import keys
    from ats_pipelines.exchange.rows import CandleRow, OrderBookRow, TradeRow
    from ats_pipelines.features import export
    from ats_pipelines.lib import bars, book
    from ats_pipelines.migration import normalise
    from ats_pipelines.quality import loaders
    from ats_pipelines.reader import schemas
    from ats_pipelines.streaming import rows
    from ats_pipelines.warehouse import bar_location, rollup_sql

    assert CANDLES.values == rollup_sql.CANDLE_VALUES
    assert CANDLES.values == bar_location.CANDLE_VALUES
    assert CANDLES.polars_schema(CANDLES.values) == schemas.BAR_VALUES
    for name, dtype in loaders.CANDLE_SCHEMA.items():
        assert CANDLES.column(name).polars == dtype
    for field in export.CANDLE_SCHEMA:
        assert CANDLES.column(field.name).arrow == field.type
    assert rows.CANDLE_VALUES == normalise.OUTPUT["candles"] == CANDLES.values
    assert ("ts", *CANDLES.values) == keys.BAR_FIELDS
    assert keys.BOOK_FIELDS[2:] == BOOK_METRICS == book.METRIC_NAMES
    assert normalise.OUTPUT["trades"] == ("trade_id", *TRADES.values)
    assert [n for n in bars.BAR_SCHEMA if n in CANDLES.names] == [
        n for n in CANDLES.names if n in bars.BAR_SCHEMA
    ]
    for name in rows.snapshots_table([]).schema.names:
        assert name in ORDER_BOOK_SNAPSHOTS.names
    # the exchange adapters' typed rows name only stored columns
    for row_type, table in ((CandleRow, CANDLES), (TradeRow, TRADES)):
        assert set(row_type._fields) <= set(table.names)
    assert set(OrderBookRow._fields) <= set(ORDER_BOOK_SNAPSHOTS.names)
