"""Acceptance: no lookahead. Real XRP/ETH minutes (with their gaps) and their rollups go through
TimescaleDB, the lake export and every feature family; then every candle that closes after T
(all timeframes) and every book minute after T is perturbed in the database and the pipeline
runs again. No feature row, and no training-set row built by Feast, with event time <= T may
change; rows after T must (the perturbation is real)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features
from ats_pipelines.features.export import export_partitions
from ats_pipelines.features.lake import Lake
from ats_pipelines.features.repo import build_repo
from ats_pipelines.features.store import apply_repo, open_store
from ats_pipelines.lib.timeframes import to_timedelta
from tests.features.conftest import (
    SYMBOL,
    all_timeframes,
    feast_values,
    load_market,
    repo_copy,
    run_sync,
    synthetic_book,
    xrp_eth_minutes,
)

T = datetime(2019, 10, 12, 13, 37, tzinfo=UTC)
DAYS = [T.date() - timedelta(days=1), T.date(), T.date() + timedelta(days=1)]
ORDER = [*cat.HIGHER_TIMEFRAMES, cat.BASE_TIMEFRAME]


def _pipeline(url: str, lake: Lake, exchange: str, at: datetime) -> dict[str, pl.DataFrame]:
    async def export() -> None:
        async with connection(url) as conn:
            await export_partitions(conn, lake, exchange, SYMBOL, DAYS)

    run_sync(export())
    for tf in ORDER:
        build_features(lake, cat.family_of(tf), exchange, SYMBOL, DAYS, at)
    return {
        name: pl.read_parquet(lake.dataset_dir(f.dataset)).sort("ts")
        for name, f in cat.FAMILIES.items()
    }


def _perturb(
    frames: dict[str, pl.DataFrame], book: pl.DataFrame, seed: int
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for tf, frame in frames.items():
        late = frame.filter(pl.col("ts") + to_timedelta(tf) > T)
        scale = pl.Series(rng.uniform(0.9, 1.1, late.height))
        out[tf] = late.with_columns(
            *(pl.col(c) * scale for c in ("open", "high", "low", "close")),
            pl.col("volume") * pl.Series(rng.uniform(0.2, 5, late.height)),
        )
    late_book = book.filter(pl.col("ts") + timedelta(minutes=1) > T)
    late_book = late_book.with_columns(
        imbalance_5_mean=pl.Series(rng.uniform(-1, 1, late_book.height)),
        spread_bps_mean=pl.col("spread_bps_mean") * 3,
    )
    return out, late_book


@pytest.fixture(scope="module")
def runs(db_url: str, testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    exchange = f"fleak{uuid.uuid4().hex[:8]}"
    frames = all_timeframes(xrp_eth_minutes(testdata, exchange))
    book = synthetic_book(frames["1m"], every=2)
    run_sync(load_market(db_url, frames, book))
    lake = Lake(tmp_path_factory.mktemp("lake"))
    before = _pipeline(db_url, lake, exchange, datetime(2024, 1, 1, tzinfo=UTC))

    folder = tmp_path_factory.mktemp("feast")
    store = open_store(repo_copy(folder), feast_values(folder))
    apply_repo(store, build_repo(lake.root))
    minutes = before["features_1m"]["event_timestamp"]
    grid = minutes.filter(minutes <= T).to_list()
    entity = pd.DataFrame(
        {
            "symbol": SYMBOL,
            "exchange": exchange,
            "event_timestamp": [*grid, *(g + timedelta(seconds=29) for g in grid[::7])],
        }
    )
    entity = entity.loc[entity["event_timestamp"] <= T].reset_index(drop=True)

    def training() -> pd.DataFrame:
        signals = store.get_historical_features(
            entity_df=entity, features=store.get_feature_service("signals_v1")
        ).to_df()
        context = store.get_historical_features(
            entity_df=entity,
            features=store.get_feature_service("context_v1"),
            full_feature_names=True,
        ).to_df()
        return signals.merge(context, on=["symbol", "exchange", "event_timestamp"])

    training_before = training()
    changed, changed_book = _perturb(frames, book, seed=1)
    run_sync(load_market(db_url, changed, changed_book, on_conflict="update"))
    after = _pipeline(db_url, lake, exchange, datetime(2024, 2, 1, tzinfo=UTC))
    return {
        "before": before,
        "after": after,
        "training": (training_before, training()),
        "entity": entity,
    }


@pytest.mark.parametrize("family", sorted(cat.FAMILIES))
def test_no_feature_row_up_to_t_changes(runs: dict, family: str) -> None:
    before, after = runs["before"][family], runs["after"][family]
    known = pl.col("event_timestamp") <= T
    assert before.filter(known).height > 0
    assert after.filter(known).equals(before.filter(known)), family
    later = pl.col("event_timestamp") > T
    moved = after.filter(later).drop("created_timestamp")
    assert not moved.equals(before.filter(later).drop("created_timestamp")), family


def test_no_training_row_up_to_t_changes(runs: dict) -> None:
    before, after = runs["training"]
    assert len(before) == len(runs["entity"]) > 1000
    assert before["tf1h_rsi_14"].notna().sum() > 500
    assert before["features_4h__ret_1"].notna().sum() > 500
    pd.testing.assert_frame_equal(after, before)


def test_minute_rows_carry_the_last_closed_higher_bar_on_real_data(runs: dict) -> None:
    minutes = runs["after"]["features_1m"]
    checked = 0
    for tf in cat.HIGHER_TIMEFRAMES:
        higher = runs["after"][cat.family_of(tf).name]
        closes = higher["event_timestamp"].to_list()
        values = higher["rsi_14"].to_list()
        for event, got in minutes.select("event_timestamp", cat.mtf_column(tf, "rsi_14")).rows()[
            ::5
        ]:
            index = max((i for i, c in enumerate(closes) if c <= event), default=None)
            fresh = index is not None and event - closes[index] < to_timedelta(tf)
            assert got == (values[index] if fresh else None), (tf, event)
            checked += got is not None
    assert checked > 500
