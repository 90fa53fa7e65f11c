"""The bulk writer's counts and idempotency, and the binary COPY encoder, on the real server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from ats_pipelines.db.bulk import BulkWriteError, bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.db.copy_binary import EncodeError

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def candles(n: int, exchange: str, start: int = 0, price: float = 100.0) -> pl.DataFrame:
    ts = [T0 + dt.timedelta(minutes=start + i) for i in range(n)]
    close = price + np.arange(n) * 0.01
    return pl.DataFrame(
        {
            "exchange": [exchange] * n,
            "symbol": ["BTC/USDT"] * n,
            "timeframe": ["1m"] * n,
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.full(n, 2.0),
            "source": ["test"] * n,
        }
    )


async def count(conn: asyncpg.Connection, exchange: str) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM market.candles WHERE exchange = $1", exchange)
        or 0
    )


# small_batch_rows=0 forces the staged paths; the default sends these few rows in one
# INSERT … SELECT FROM unnest.
STAGED: dict[str, Any] = {"small_batch_rows": 0}


@pytest.mark.parametrize(("chunk_rows", "small"), [(7, 0), (1000, 0), (1000, 500)])
async def test_counts_insert_then_skip(
    conn: asyncpg.Connection, chunk_rows: int, small: int
) -> None:
    ex = f"bulk-skip-{chunk_rows}-{small}"
    rows = candles(50, ex)
    opts: dict[str, Any] = {"chunk_rows": chunk_rows, "small_batch_rows": small}
    first = await bulk_write(conn, "market.candles", rows, **opts)
    again = await bulk_write(conn, "market.candles", rows, **opts)
    assert (first.received, first.inserted, first.updated, first.skipped) == (50, 50, 0, 0)
    assert (again.inserted, again.updated, again.skipped) == (0, 0, 50)
    assert await count(conn, ex) == 50


async def test_overlapping_batch_inserts_only_new_keys(conn: asyncpg.Connection) -> None:
    ex = "bulk-overlap"
    await bulk_write(conn, "market.candles", candles(30, ex))
    result = await bulk_write(
        conn, "market.candles", candles(30, ex, start=20), chunk_rows=8, **STAGED
    )
    assert (result.inserted, result.skipped) == (20, 10)
    assert await count(conn, ex) == 50


async def test_update_mode_rewrites_only_changed_rows(conn: asyncpg.Connection) -> None:
    ex = "bulk-update"
    base = candles(10, ex)
    await bulk_write(conn, "market.candles", base)
    changed = base.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.col("volume") * 2)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    mixed = pl.concat([changed, candles(2, ex, start=10)])
    result = await bulk_write(conn, "market.candles", mixed, on_conflict="update", **STAGED)
    assert (result.inserted, result.updated, result.skipped) == (2, 3, 7)
    volumes = await conn.fetch(
        "SELECT volume FROM market.candles WHERE exchange = $1 ORDER BY ts LIMIT 4", ex
    )
    assert [r[0] for r in volumes] == [4.0, 4.0, 4.0, 2.0]


async def test_in_batch_duplicates_keep_the_last(conn: asyncpg.Connection) -> None:
    ex = "bulk-dupes"
    first = candles(3, ex)
    later = candles(1, ex, price=200.0)
    result = await bulk_write(
        conn, "market.candles", pl.concat([first, later]), on_conflict="update"
    )
    assert (result.received, result.inserted, result.skipped) == (4, 3, 1)
    assert (
        await conn.fetchval(
            "SELECT close FROM market.candles WHERE exchange = $1 AND ts = $2", ex, T0
        )
        == 200.0
    )


async def test_racing_writer_falls_back_to_on_conflict(db_url: str) -> None:
    """A concurrent transaction holding one of our keys: the plain path hits a unique
    violation once it commits, and the ON CONFLICT path finishes the job."""
    ex = "bulk-race"
    async with connection(db_url) as rival, connection(db_url) as conn:
        tx = rival.transaction()
        await tx.start()
        await bulk_write(rival, "market.candles", candles(1, ex, start=5))
        writer = asyncio.create_task(bulk_write(conn, "market.candles", candles(10, ex), **STAGED))
        await asyncio.sleep(0.5)
        assert not writer.done()  # blocked on the rival's uncommitted key
        await tx.commit()
        result = await writer
        assert (result.inserted, result.skipped) == (9, 1)
        assert await count(conn, ex) == 10


async def test_whole_write_is_one_transaction(conn: asyncpg.Connection) -> None:
    ex = "bulk-atomic"
    bad = candles(20, ex).with_columns(
        pl.when(pl.int_range(pl.len()) == 15).then(-1.0).otherwise(pl.col("low")).alias("low")
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await bulk_write(conn, "market.candles", bad, chunk_rows=5)
    assert await count(conn, ex) == 0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"exchange": "x", "symbol": "s", "timeframe": "1m", "ts": T0, "colour": 1}],
            "has no column",
        ),
        ([{"exchange": "x", "symbol": "s", "ts": T0, "open": 1.0}], "lack key column"),
    ],
)
async def test_rows_that_do_not_fit_name_the_problem(
    conn: asyncpg.Connection, rows: list[dict], message: str
) -> None:
    with pytest.raises(BulkWriteError, match=message):
        await bulk_write(conn, "market.candles", rows)


async def test_unknown_table_is_named(conn: asyncpg.Connection) -> None:
    with pytest.raises(BulkWriteError, match=r"market\.nope does not exist"):
        await bulk_write(conn, "market.nope", [{"a": 1}])


async def test_naive_timestamps_are_refused(conn: asyncpg.Connection) -> None:
    rows = candles(2, "bulk-naive").with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(EncodeError, match="'ts': timestamp has no time zone"):
        await bulk_write(conn, "market.candles", rows)


async def test_encoder_round_trips_every_supported_type(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TABLE ops.encoder_probe (k int8 PRIMARY KEY, t text, f float8, i int4, "
        "s int2, b bool, ts timestamptz, d date, j jsonb, arr float8[])"
    )
    table = pa.table(
        {
            "k": pa.array([1, 2, 3, 4], pa.int64()),
            "t": pa.array(["a", None, "ünïcode ✓", ""]),
            "f": pa.array([1.5, None, -0.0, 1e300]),
            "i": pa.array([1, 2, None, -5], pa.int32()),
            "s": pa.array([1, None, 3, 4], pa.int16()),
            "b": pa.array([True, False, None, True]),
            "ts": pa.array(
                [T0, None, T0 + dt.timedelta(microseconds=1), T0], pa.timestamp("us", tz="UTC")
            ),
            "d": pa.array([dt.date(2024, 1, 1), dt.date(1999, 12, 31), None, dt.date(2000, 1, 1)]),
            "j": pa.array([json.dumps({"a": 1}), None, "[1, 2]", "{}"]),
            "arr": pa.array([[1.0, 2.0], [], None, [3.5]], pa.list_(pa.float64())),
        }
    )
    result = await bulk_write(conn, "ops.encoder_probe", table)
    assert result.inserted == 4
    rows = await conn.fetch("SELECT * FROM ops.encoder_probe ORDER BY k")
    got = [dict(r) for r in rows]
    assert got[0] == {
        "k": 1,
        "t": "a",
        "f": 1.5,
        "i": 1,
        "s": 1,
        "b": True,
        "ts": T0,
        "d": dt.date(2024, 1, 1),
        "j": '{"a": 1}',
        "arr": [1.0, 2.0],
    }
    assert got[1]["t"] is None and got[1]["f"] is None and got[1]["arr"] == []
    assert got[2]["t"] == "ünïcode ✓" and got[2]["ts"] == T0 + dt.timedelta(microseconds=1)
    assert got[2]["arr"] is None and got[2]["i"] is None and got[2]["j"] == "[1, 2]"
    assert got[3]["t"] == "" and got[3]["f"] == 1e300 and got[3]["d"] == dt.date(2000, 1, 1)
    assert got[1]["d"] == dt.date(1999, 12, 31)
    await conn.execute("DROP TABLE ops.encoder_probe")


async def test_mixed_series_chunks_take_the_staged_path_correctly(conn: asyncpg.Connection) -> None:
    """A chunk holding two series cannot be probed as one: it is staged and merged."""
    ex = "bulk-mixed"
    first = candles(10, ex)
    second = candles(10, ex).with_columns(pl.lit("ETH/USDT").alias("symbol"))
    await bulk_write(conn, "market.candles", first.head(4))
    result = await bulk_write(conn, "market.candles", pl.concat([first, second]), **STAGED)
    assert (result.inserted, result.skipped) == (16, 4)
    assert await count(conn, ex) == 20


async def test_small_batches_upsert_in_one_statement(conn: asyncpg.Connection) -> None:
    """The few-rows path (a stream's closed bars) counts and updates like the staged one."""
    ex = "bulk-small"
    base = candles(6, ex)
    first = await bulk_write(conn, "market.candles", base)
    changed = base.with_columns(
        pl.when(pl.int_range(pl.len()) < 2)
        .then(pl.col("volume") * 3)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    second = await bulk_write(
        conn, "market.candles", pl.concat([changed, candles(1, ex, 6)]), on_conflict="update"
    )
    assert (first.inserted, first.skipped) == (6, 0)
    assert (second.inserted, second.updated, second.skipped) == (1, 2, 4)
    assert await count(conn, ex) == 7


async def test_write_paths_are_reported(conn: asyncpg.Connection) -> None:
    """New series go straight in by COPY; overlapping chunks are staged; few rows take one
    statement. Trades vary in trade_id, yet their (exchange, symbol) still probes."""
    ex = "bulk-paths"
    fresh = await bulk_write(conn, "market.candles", candles(40, ex), **STAGED)
    overlap = await bulk_write(conn, "market.candles", candles(40, ex, start=20), **STAGED)
    small = await bulk_write(conn, "market.candles", candles(3, ex, start=100))
    trades = [
        {
            "exchange": ex,
            "symbol": "BTC/USDT",
            "ts": T0 + dt.timedelta(seconds=i),
            "trade_id": str(i),
            "price": 1.0,
            "amount": 1.0,
            "source": "test",
        }
        for i in range(5)
    ]
    first_trades = await bulk_write(conn, "market.trades", trades, **STAGED)
    assert fresh.paths == {"copy": 1}
    assert overlap.paths == {"staged": 1} and overlap.inserted == 20
    assert small.paths == {"small": 1}
    assert first_trades.paths == {"copy": 1}
    assert (fresh + overlap).paths == {"copy": 1, "staged": 1}
