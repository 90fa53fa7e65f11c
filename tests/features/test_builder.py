"""Feature and label partitions: idempotent (byte-identical files), independent of how a run
groups days, and ``created_timestamp`` moves only for rows whose values changed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import WARMUP_ROWS, build_features, build_labels
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake, file_sha256, unique_key
from tests.features.conftest import (
    START,
    all_timeframes,
    synthetic_book,
    synthetic_minutes,
    write_lake,
)

EXCHANGE, SYMBOL = "binance", "ETH/USDT"
DAYS = [START.date() + timedelta(days=i) for i in range(3)]
T1 = datetime(2024, 6, 1, tzinfo=UTC)
T2 = datetime(2024, 6, 2, tzinfo=UTC)
ORDER = [*cat.HIGHER_TIMEFRAMES, cat.BASE_TIMEFRAME]  # 1m reads the higher families


@pytest.fixture(scope="module")
def market() -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    frames = all_timeframes(synthetic_minutes(EXCHANGE, SYMBOL, days=3, seed=21))
    return frames, synthetic_book(frames["1m"], every=2)


def _lake(root: Path, market: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> Lake:
    lake = Lake(root)
    write_lake(lake, *market)
    return lake


def _build_all(lake: Lake, days_groups: list[list[date]], at: datetime) -> None:
    for tf in ORDER:
        for days in days_groups:
            build_features(lake, cat.family_of(tf), EXCHANGE, SYMBOL, days, at)
    for days in days_groups:
        build_labels(lake, LabelSpec(), EXCHANGE, SYMBOL, days)


def _checksums(lake: Lake, prefix: str) -> dict[str, str]:
    return {
        str(p.relative_to(lake.root)): file_sha256(p)
        for p in sorted((lake.root / prefix).rglob("*.parquet"))
    }


def test_rerun_is_byte_identical(tmp_path: Path, market: tuple) -> None:
    lake = _lake(tmp_path / "a", market)
    _build_all(lake, [DAYS], T1)
    first = {**_checksums(lake, "features"), **_checksums(lake, "labels")}
    assert len(first) == len(DAYS) * (len(cat.FAMILIES) + 1)
    # what lets the offline store skip its duplicate check on these folders
    assert unique_key(lake.dataset_dir(cat.BASE_FAMILY.dataset)) == [
        "exchange",
        "symbol",
        "event_timestamp",
    ]
    report = build_features(lake, cat.BASE_FAMILY, EXCHANGE, SYMBOL, DAYS, T2)
    assert report.written == 0 and report.rows == 3 * 1440
    _build_all(lake, [DAYS], T2)  # a later run: same values, so same created_timestamp
    assert {**_checksums(lake, "features"), **_checksums(lake, "labels")} == first


def test_ranged_and_day_by_day_runs_write_the_same_files(tmp_path: Path, market: tuple) -> None:
    ranged, daily = _lake(tmp_path / "ranged", market), _lake(tmp_path / "daily", market)
    _build_all(ranged, [DAYS], T1)
    _build_all(daily, [[d] for d in reversed(DAYS)], T1)
    assert _checksums(ranged, "features") == _checksums(daily, "features")
    assert _checksums(ranged, "labels") == _checksums(daily, "labels")


def test_created_timestamp_moves_only_where_values_changed(tmp_path: Path, market: tuple) -> None:
    frames, _ = market
    lake = _lake(tmp_path / "c", market)
    _build_all(lake, [DAYS], T1)
    before = pl.read_parquet(lake.dataset_dir(cat.BASE_FAMILY.dataset))
    at = datetime.combine(DAYS[1], datetime.min.time(), UTC) + timedelta(hours=12)
    changed = frames["1m"].with_columns(
        pl.when(pl.col("ts") == at)
        .then(pl.col("volume") * 10)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    write_lake(lake, {"1m": changed})
    build_features(lake, cat.BASE_FAMILY, EXCHANGE, SYMBOL, DAYS, T2)
    rows = pl.read_parquet(lake.dataset_dir(cat.BASE_FAMILY.dataset))
    assert rows.filter(pl.col("ts") < at)["created_timestamp"].unique().to_list() == [T1]
    assert rows.filter(pl.col("ts") < at).equals(before.filter(pl.col("ts") < at))
    moved = rows.filter(pl.col("created_timestamp") == T2)
    assert moved["ts"].min() == at
    # Past the longest window the change survives only as rounding in polars' sliding sums:
    # those rows differ in the last bits (so they are "new values"), by no more than that.
    late = at + timedelta(minutes=WARMUP_ROWS)
    old = before.filter(pl.col("ts") >= late).drop("created_timestamp")
    new = rows.filter(pl.col("ts") >= late).drop("created_timestamp")
    for name in ("volume_z_60", "vwap_dev_60", "rsi_14"):
        assert new[name].to_numpy() == pytest.approx(old[name].to_numpy(), rel=1e-9, nan_ok=True)
    window = rows.filter((pl.col("ts") >= at) & (pl.col("ts") < at + timedelta(minutes=60)))
    assert (window["created_timestamp"] == T2).all()


def test_a_day_without_bars_has_no_file(tmp_path: Path, market: tuple) -> None:
    lake = _lake(tmp_path / "d", market)
    missing = DAYS[-1] + timedelta(days=5)
    report = build_features(lake, cat.family_of("5m"), EXCHANGE, SYMBOL, [missing], T1)
    assert [p.rows for p in report.partitions] == [0]
    assert not lake.partition_path("features/features_5m", EXCHANGE, SYMBOL, missing).exists()


def test_last_rows_of_the_data_get_labels_only_once_the_horizon_is_there(
    tmp_path: Path, market: tuple
) -> None:
    lake = _lake(tmp_path / "e", market)
    spec = LabelSpec()
    report = build_labels(lake, spec, EXCHANGE, SYMBOL, DAYS)
    assert [p.rows for p in report.partitions] == [1440, 1440, 1440 - spec.horizon]
