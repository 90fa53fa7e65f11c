"""The content checksum, the sorted stream (validation across chunks) and the grid report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.migration.checksum import db_digest, frame_digest, select_list
from ats_pipelines.migration.dedupe import SortedStream, Unsorted
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.grid import GridTracker
from ats_pipelines.migration.normalise import ROW
from ats_pipelines.migration.validation import FileValidator

COLS = ("ts", "open", "high", "low", "close", "volume")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candles(n: int, start: int = 0) -> pl.DataFrame:
    ts = [T0 + timedelta(minutes=start + i) for i in range(n)]
    price = [100.0 + (start + i) * 0.25 for i in range(n)]
    return pl.DataFrame(
        {
            "ts": ts,
            "open": price,
            "high": [p + 1 for p in price],
            "low": [p - 1 for p in price],
            "close": price,
            "volume": [float(i % 7) for i in range(n)],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_checksum_ignores_order_but_not_values() -> None:
    frame = candles(500)
    digest = frame_digest(frame, COLS, frozenset())
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert frame_digest(shuffled, COLS, frozenset()) == digest
    # two rows swap their close prices: column sums stay, the checksum must not
    swapped = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 10)
        .then(pl.col("close").get(11))
        .when(pl.int_range(pl.len()) == 11)
        .then(pl.col("close").get(10))
        .otherwise(pl.col("close"))
        .alias("close")
    )
    assert frame_digest(swapped, COLS, frozenset()).total != digest.total
    one_ulp = frame.with_columns(pl.col("volume").cast(pl.Float64) * (1 + 2**-52))
    assert frame_digest(one_ulp, COLS, frozenset()).total != digest.total
    halves = frame_digest(frame.head(200), COLS, frozenset()) + frame_digest(
        frame.tail(300), COLS, frozenset()
    )
    assert halves == digest


async def test_database_rows_give_the_same_checksum(migration_db: str) -> None:
    """Binary COPY out of the server and numpy over the source agree, NULL/NaN and text too."""
    async with connection(migration_db) as conn:
        await _same_checksum(conn)


async def _same_checksum(conn: asyncpg.Connection) -> None:
    frame = candles(3).with_columns(
        pl.Series("volume", [1.5, None, float("nan")]), pl.Series("side", ["buy", None, "sell"])
    )
    cols, text = (*COLS, "side"), frozenset({"side"})
    await conn.execute(
        "CREATE TEMP TABLE cs (ts timestamptz, open float8, high float8, "
        "low float8, close float8, volume float8, side text)"
    )
    await conn.executemany(
        "INSERT INTO cs VALUES ($1, $2, $3, $4, $5, $6, $7)", frame.select(cols).rows()
    )
    from_db = await db_digest(conn, f"SELECT {select_list(cols, text)} FROM cs t", [], cols, text)
    assert from_db == frame_digest(frame, cols, text)
    assert from_db.count == 3


def _file(dataset: str = "candles") -> DiscoveredFile:
    return DiscoveredFile(
        Path("/x/f.parquet"),
        Path("/x"),
        "f.parquet",
        "parquet",
        0,
        dataset,
        "binance",
        "BTC/USDT",
        "1m",
        "spot",
        None,
    )


def _stream() -> SortedStream:
    validator = FileValidator(_file())
    return SortedStream(lambda f: validator.check(validator.with_location(f)))


def test_repeats_across_chunks_are_settled_like_within_one() -> None:
    frame = candles(10).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW))
    repeat = frame.slice(4, 1).with_columns(pl.lit(99, pl.Int64).alias(ROW))  # same values
    conflict = frame.slice(4, 1).with_columns(
        pl.lit(100, pl.Int64).alias(ROW), pl.col("close") + 0.5
    )
    stream = _stream()
    pieces = [stream.push(frame.head(5)), stream.push(pl.concat([repeat, conflict, frame.tail(5)]))]
    last = stream.finish()
    assert last is not None
    pieces.append(last)
    accepted = pl.concat([p.accepted for p in pieces])
    assert accepted["ts"].to_list() == frame["ts"].to_list()
    assert accepted.filter(pl.col("ts") == frame["ts"][4])["close"].to_list() == [
        frame["close"][4]
    ]  # the first row of the key won
    assert sum(p.duplicates for p in pieces) == 1
    assert [r for p in pieces for r in p.quarantine["rule"].to_list()] == [
        "ohlcv.duplicate_conflict"
    ]


def test_a_chunk_reaching_back_is_unsorted() -> None:
    frame = candles(10).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW))
    stream = _stream()
    stream.push(frame.tail(5))
    with pytest.raises(Unsorted):
        stream.push(frame.head(5))


def test_grid_report_counts_gaps_and_off_grid_rows() -> None:
    minute = 60_000_000
    base = int(T0.timestamp()) * 1_000_000
    grid = GridTracker("1m")
    grid.push(np.array([base, base + minute, base + 4 * minute]))
    grid.push(np.array([base + 5 * minute + 17_000, base + 9 * minute]))
    report = grid.report()
    assert (report["rows"], report["missing"], report["off_grid_rows"]) == (5, 5, 1)
    assert [g["missing"] for g in report["largest_gaps"]] == [3, 2]
    assert report["largest_gaps"][0]["after"] == "2024-01-01T00:05:00Z"
    monthly = GridTracker("1M")
    months = [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 5)]
    monthly.push(np.array([int(m.timestamp()) * 1_000_000 for m in months]))
    assert monthly.report()["missing"] == 2
