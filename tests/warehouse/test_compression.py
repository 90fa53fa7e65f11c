"""Compressed candles: series are segments ordered by time, and the rollup's "what changed since
the watermark" question opens only the batches that changed (issue 21, defect 5).

Each compressed batch carries the bounds of its rows' ``ingested_at`` (TimescaleDB keeps
min/max metadata for a column with a B-tree index: ``candles_1m_ingested_idx``, sql/040), so
the question is answered from batch metadata without decompressing unchanged batches. Without
compression (plain PostgreSQL, Apache) the same question is the partial index's range scan.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.warehouse.rollup_sql import bucket
from ats_pipelines.warehouse.rollups import _TOUCHED_SQL, server_edition
from tests.conftest import run_sync

START = datetime(2024, 2, 5, tzinfo=UTC)
MINUTES = 21 * 1440  # three weekly chunks, ten thousand minutes per chunk per series


def _minutes(symbol: str) -> list[dict[str, object]]:
    return [
        {
            "exchange": "binance",
            "symbol": symbol,
            "timeframe": "1m",
            "ts": START + timedelta(minutes=i),
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.5,
            "volume": 1.0 + i % 7,
            "source": "test",
        }
        for i in range(MINUTES)
    ]


@pytest.fixture(scope="module")
def compressed(make_database: Callable[..., str]) -> tuple[str, str]:
    """A database with two series of minutes, compressed where the edition can; one minute of
    one series rewritten afterwards. Returns (url, edition)."""
    url = make_database("ats_cmp")

    async def body() -> str:
        async with connection(url) as conn:
            await migrate(conn)
            for symbol in ("BTC/USDT", "ETH/USDT"):
                await bulk_write(conn, "market.candles", _minutes(symbol))
            edition = await server_edition(conn)
            if edition == "timescale":
                await conn.execute("SELECT compress_chunk(c) FROM show_chunks('market.candles') c")
            return edition

    return url, run_sync(body())


def test_candles_compress_by_series_ordered_by_time(compressed: tuple[str, str]) -> None:
    url, edition = compressed

    async def body() -> list[tuple[str, int | None, int | None]]:
        async with connection(url) as conn:
            rows = await conn.fetch(
                "SELECT attname, segmentby_column_index, orderby_column_index "
                "FROM timescaledb_information.compression_settings "
                "WHERE hypertable_schema = 'market' AND hypertable_name = 'candles' "
                "ORDER BY attname"
            )
            return [tuple(r) for r in rows]

    if edition != "timescale":
        assert edition in ("postgresql", "apache")  # no native compression to tune
        return
    settings = run_sync(body())
    segment = sorted((i, a) for a, i, _ in settings if i is not None)
    order = sorted((i, a) for a, _, i in settings if i is not None)
    assert [a for _, a in segment] == ["exchange", "symbol", "timeframe"]
    assert [a for _, a in order] == ["ts"]


def test_changed_since_watermark_reads_only_changed_batches(compressed: tuple[str, str]) -> None:
    url, edition = compressed

    async def body() -> tuple[list[str], list[datetime]]:
        async with connection(url) as conn:
            watermark = await conn.fetchval("SELECT max(ingested_at) FROM market.candles")
            changed = START + timedelta(days=10, minutes=7)
            await conn.execute(
                "UPDATE market.candles SET volume = volume + 1 WHERE exchange = 'binance' "
                "AND symbol = 'ETH/USDT' AND timeframe = '1m' AND ts = $1",
                changed,
            )
            sql = _TOUCHED_SQL.format(bucket=bucket(edition, "5m", "ts"))
            args = ("binance", "ETH/USDT", watermark)
            plan = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *args)]
            return plan, [r["b"] for r in await conn.fetch(sql, *args)]

    plan, touched = run_sync(body())
    assert touched == [START + timedelta(days=10, minutes=5)]
    if edition == "timescale":
        text = "\n".join(plan)
        # batches are skipped on their ingested_at bounds, never decompressed to be filtered
        assert "_ts_meta_v2_max_ingested_at" in text, text
        decompressed = [
            int(line.split("rows=")[1].split()[0])
            for line in plan
            if "DecompressChunk" in line and "rows=" in line
        ]
        assert sum(decompressed) == 0, text  # the changed row is uncompressed now
