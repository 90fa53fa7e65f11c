"""The stored market tables, declared once: name, key, columns and their types.

Everything that spells a column list derives it from here: polars and Arrow schemas, COPY
column lists, SQL select lists, the rollup's value columns, the hot cache's bar fields. The
``sql/`` migrations create the tables; ``tests/lib/test_tables.py`` checks that the database's
actual columns (names, types, nullability, order) equal these declarations, so a migration that
adds a column (say a provenance column) adds it here too, and every derived list follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from ats_pipelines.lib.book import METRIC_NAMES

_POLARS: dict[str, Any] = {
    "text": pl.String,
    "timestamptz": pl.Datetime("us", "UTC"),
    "double precision": pl.Float64,
    "bigint": pl.Int64,
    "integer": pl.Int32,
    "double precision[]": pl.List(pl.Float64),
    "text[]": pl.List(pl.String),
}
_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "double precision": pa.float64(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "double precision[]": pa.list_(pa.float64()),
    "text[]": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # as information_schema spells it ("double precision", "timestamptz" …)
    nullable: bool = True

    @property
    def pg_type(self) -> str:
        """The type as PostgreSQL's ``format_type`` spells it."""
        return "timestamp with time zone" if self.sql_type == "timestamptz" else self.sql_type

    @property
    def polars(self) -> Any:
        return _POLARS[self.sql_type]

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self.sql_type]


@dataclass(frozen=True)
class Table:
    """A stored table: ``name`` is ``schema.table``; ``key`` its primary key."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    values: tuple[str, ...] = ()  # the measured values (what rollups and readers carry)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def pick(self, names: Iterable[str] | None = None) -> tuple[Column, ...]:
        return self.columns if names is None else tuple(self.column(n) for n in names)

    def polars_schema(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        return {c.name: c.polars for c in self.pick(names)}

    def arrow_schema(self, names: Iterable[str] | None = None, *, strict: bool = True) -> pa.Schema:
        """``strict=False``: every field nullable (a writer's rows checked by the database)."""
        return pa.schema(
            [pa.field(c.name, c.arrow, c.nullable or not strict) for c in self.pick(names)]
        )

    def column_list(self, names: Iterable[str] | None = None, prefix: str = "") -> str:
        """``a, b, c`` (or ``p.a, p.b`` …) for SQL select and COPY lists."""
        return ", ".join(f"{prefix}{c.name}" for c in self.pick(names))


def _cols(spec: str) -> tuple[Column, ...]:
    """``name type [not null]`` per line: the declarations below read like the DDL."""
    out = []
    for line in spec.strip().splitlines():
        name, rest = line.split(None, 1)
        not_null = rest.endswith(" not null")
        out.append(Column(name, rest.removesuffix(" not null"), not not_null))
    return tuple(out)


_KEY = "exchange text not null\nsymbol text not null"

CANDLES = Table(
    "market.candles",
    key=("exchange", "symbol", "timeframe", "ts"),
    columns=_cols(f"""
{_KEY}
timeframe text not null
ts timestamptz not null
open double precision not null
high double precision not null
low double precision not null
close double precision not null
volume double precision not null
quote_volume double precision
trade_count bigint
vwap double precision
taker_buy_volume double precision
source text not null
batch_id bigint
ingested_at timestamptz not null
asserted_by text[]
"""),
    values=(
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trade_count",
        "vwap",
        "taker_buy_volume",
    ),
)

TRADES = Table(
    "market.trades",
    key=("exchange", "symbol", "ts", "trade_id"),
    columns=_cols(f"""
{_KEY}
ts timestamptz not null
trade_id text not null
price double precision not null
amount double precision not null
cost double precision
side text
source text not null
batch_id bigint
received_at timestamptz
ingested_at timestamptz not null
asserted_by text[]
"""),
    values=("price", "amount", "cost", "side"),
)

# the metrics lib/book.py computes, one column each
BOOK_METRICS: tuple[str, ...] = METRIC_NAMES
BOOK_LEVELS: tuple[str, ...] = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")

ORDER_BOOK_SNAPSHOTS = Table(
    "market.order_book_snapshots",
    key=("exchange", "symbol", "ts"),
    columns=_cols(
        f"{_KEY}\nts timestamptz not null\n"
        + "".join(f"{n} double precision[] not null\n" for n in BOOK_LEVELS)
        + "sequence bigint\n"
        + "".join(f"{n} double precision\n" for n in BOOK_METRICS)
        + "source text not null\nbatch_id bigint\ningested_at timestamptz not null"
    ),
    values=(*BOOK_LEVELS, "sequence", *BOOK_METRICS),
)

_BOOK_AGG_VALUES = (
    "snapshots",
    "mid_open",
    "mid_high",
    "mid_low",
    "mid_close",
    "spread_mean",
    "spread_max",
    *(f"{n}_mean" for n in BOOK_METRICS if n not in ("mid", "spread")),
)


def _book_agg(name: str) -> Table:
    nullable_from = _BOOK_AGG_VALUES.index("spread_mean")
    lines = [f"{_KEY}", "ts timestamptz not null", "snapshots integer not null"]
    for i, n in enumerate(_BOOK_AGG_VALUES[1:], start=1):
        lines.append(f"{n} double precision" + ("" if i >= nullable_from else " not null"))
    lines.append("computed_at timestamptz not null")
    return Table(name, ("exchange", "symbol", "ts"), _cols("\n".join(lines)), _BOOK_AGG_VALUES)


ORDER_BOOK_1S_AGG = _book_agg("market.order_book_1s_agg")
ORDER_BOOK_1M_AGG = _book_agg("market.order_book_1m_agg")

TABLES: tuple[Table, ...] = (
    CANDLES,
    TRADES,
    ORDER_BOOK_SNAPSHOTS,
    ORDER_BOOK_1S_AGG,
    ORDER_BOOK_1M_AGG,
)
