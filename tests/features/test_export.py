"""Export from TimescaleDB to the lake: one file per dataset and day equal to the database rows,
incremental (only days whose rows changed are rewritten, emptied days lose their file)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.features.catalog import EXPORT_TIMEFRAMES
from ats_pipelines.features.export import (
    BOOK_DATASET,
    CANDLE_SCHEMA,
    FINGERPRINT_KEY,
    ExportReport,
    candles_dataset,
    export_partitions,
)
from ats_pipelines.features.lake import Lake, file_metadata, file_sha256
from tests.features.conftest import (
    SYMBOL,
    all_timeframes,
    load_market,
    run_sync,
    synthetic_book,
    xrp_eth_minutes,
)

DAYS = [date(2019, 10, 11), date(2019, 10, 12), date(2019, 10, 13)]


async def _export(url: str, lake: Lake, exchange: str, days: list[date]) -> ExportReport:
    async with connection(url) as conn:
        return await export_partitions(conn, lake, exchange, SYMBOL, days)


@pytest.fixture
def loaded(db_url: str, testdata: Path, exchange: str, tmp_path: Path) -> tuple[Lake, dict]:
    frames = all_timeframes(xrp_eth_minutes(testdata, exchange))
    book = synthetic_book(frames["1m"], every=2)
    run_sync(load_market(db_url, frames, book))
    return Lake(tmp_path / "lake"), {"frames": frames, "book": book}


def test_one_file_per_dataset_and_day_equal_to_the_database(
    db_url: str, exchange: str, loaded: tuple[Lake, dict]
) -> None:
    lake, data = loaded
    report = run_sync(_export(db_url, lake, exchange, DAYS))
    assert report.files_written == len(DAYS) * (len(EXPORT_TIMEFRAMES) + 1)
    for tf in EXPORT_TIMEFRAMES:
        files = lake.files(candles_dataset(tf), exchange, SYMBOL, DAYS)
        got = pl.concat([pl.read_parquet(f) for f in files])
        want = data["frames"][tf]
        assert got.height == want.height, tf
        assert got["close"].to_list() == want["close"].to_list()
        assert got["ts"].dt.cast_time_unit("ms").to_list() == want["ts"].to_list()
        assert pq.read_schema(files[0]).remove_metadata() == CANDLE_SCHEMA
        for f in files:  # each file holds exactly its UTC day
            assert set(pl.read_parquet(f)["ts"].dt.date().to_list()) == {date.fromisoformat(f.stem)}
    book = pl.concat([pl.read_parquet(f) for f in lake.files(BOOK_DATASET, exchange, SYMBOL, DAYS)])
    assert book["imbalance_5_mean"].to_list() == data["book"]["imbalance_5_mean"].to_list()


def test_only_changed_days_are_rewritten(
    db_url: str, exchange: str, loaded: tuple[Lake, dict]
) -> None:
    lake, data = loaded
    run_sync(_export(db_url, lake, exchange, DAYS))
    day2 = lake.partition_path(candles_dataset("1m"), exchange, SYMBOL, DAYS[1])
    before = {p: file_sha256(p) for p in lake.root.rglob("*.parquet")}
    fingerprint = file_metadata(day2)[FINGERPRINT_KEY]

    again = run_sync(_export(db_url, lake, exchange, DAYS))
    assert again.files_written == 0
    assert {p: file_sha256(p) for p in lake.root.rglob("*.parquet")} == before

    minute = data["frames"]["1m"].filter(pl.col("ts").dt.date() == DAYS[1]).head(1)
    changed = minute.with_columns(pl.col("volume") * 3)
    run_sync(load_market(db_url, {"1m": changed}, on_conflict="update"))

    async def drop_book(url: str) -> None:
        async with connection(url) as conn:
            await conn.execute(
                "DELETE FROM market.order_book_1m_agg WHERE exchange = $1 AND "
                "ts >= '2019-10-13' AND ts < '2019-10-14'",
                exchange,
            )

    run_sync(drop_book(db_url))
    third = run_sync(_export(db_url, lake, exchange, DAYS))
    written = {(d.dataset, day) for d in third.datasets for day in d.exported}
    removed = {(d.dataset, day) for d in third.datasets for day in d.removed}
    assert written == {(candles_dataset("1m"), DAYS[1])}
    assert removed == {(BOOK_DATASET, DAYS[2])}
    assert not lake.partition_path(BOOK_DATASET, exchange, SYMBOL, DAYS[2]).exists()
    first_row = pl.read_parquet(day2).filter(pl.col("ts") == minute["ts"][0])
    assert first_row["volume"][0] == pytest.approx(minute["volume"][0] * 3)
    unchanged = [p for p in before if p != day2 and p.exists()]
    assert all(file_sha256(p) == before[p] for p in unchanged)
    assert file_metadata(day2)[FINGERPRINT_KEY] != fingerprint


def test_days_without_rows_write_nothing(
    db_url: str, exchange: str, loaded: tuple[Lake, dict]
) -> None:
    lake, _ = loaded
    report = run_sync(_export(db_url, lake, exchange, [date(2019, 10, 20)]))
    assert report.files_written == 0
    assert not any(lake.root.rglob("*.parquet"))
