"""Training sets, drift features and online features through the real Feast repository: the
project's feature_store.yaml, the repo objects (signals_v1), the DuckDB offline store over a
Parquet lake built by the features code, and the label set kept apart from the features."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features, build_labels
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake
from ats_pipelines.features.store import apply_repo, materialize_views
from ats_pipelines.orchestration.resources.features import FeastResource
from ats_pipelines.orchestration.resources.models import ScopeConfig
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import FeastTrainingData
from ats_pipelines.training import queue, registry
from ats_pipelines.training.dataset import CLASSES, TrainingDataError, utc_datetime
from ats_pipelines.training.pipeline import TrainingRun, train_request
from ats_pipelines.training.predict import score, write_signals
from ats_pipelines.training.promotion import PromotionPolicy
from ats_pipelines.training.trainer import TrainerConfig
from tests.features.conftest import (
    START,
    all_timeframes,
    feast_values,
    repo_copy,
    synthetic_book,
    synthetic_minutes,
    write_lake,
)

EXCHANGE = "feastex"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
DAYS = [START.date() + timedelta(days=i) for i in range(3)]
BUILT_AT = datetime(2024, 6, 1, tzinfo=UTC)
SCOPE = ScopeConfig(exchange=EXCHANGE, symbols=list(SYMBOLS)).to_scope("default")


@pytest.fixture(scope="module")
def feast(tmp_path_factory: pytest.TempPathFactory) -> FeastResource:
    """A lake with features and labels of two symbols over three days, and a Feast store on
    the project's feature_store.yaml with the repository applied."""
    root = tmp_path_factory.mktemp("feast")
    lake = Lake(root / "lake")
    for seed, symbol in enumerate(SYMBOLS, start=11):
        frames = all_timeframes(synthetic_minutes(EXCHANGE, symbol, days=3, seed=seed))
        write_lake(lake, frames, synthetic_book(frames["1m"]))
        for tf in (*cat.HIGHER_TIMEFRAMES, cat.BASE_TIMEFRAME):  # 1m reads the higher ones
            build_features(lake, cat.family_of(tf), EXCHANGE, symbol, DAYS, BUILT_AT)
        build_labels(lake, LabelSpec(), EXCHANGE, symbol, DAYS)
    values = feast_values(root / "feast")
    resource = FeastResource(
        repo_path=str(repo_copy(root / "repo")),
        lake_root=str(lake.root),
        registry=values["ATS_FEAST_REGISTRY"],
        online_store=values["ATS_FEAST_ONLINE_STORE"],
    )
    apply_repo(resource.store(), resource.repo())
    return resource


def _window() -> tuple[datetime, datetime]:
    start = datetime.combine(DAYS[0], datetime.min.time(), UTC)
    return start, start + timedelta(days=len(DAYS))


def test_the_training_set_is_labels_joined_to_signals_v1_point_in_time(
    feast: FeastResource,
) -> None:
    data = FeastTrainingData(feast=feast)
    served = data.served_features(SCOPE)
    assert served == list(cat.BASE_FAMILY.features)
    start, end = _window()
    ts = data.training_source(SCOPE).load("default", start, end)
    labels = pl.read_parquet(Lake(Path(feast.lake_root)).glob("labels/labels_1m"))
    assert len(ts) == labels.height > 2 * 2 * 1440  # both symbols, every labelled minute
    assert ts.features == served and ts.feature_service == "signals_v1"
    assert (ts.label_end_ts > ts.event_ts).all()
    assert set(np.unique(ts.y)) <= {0, 1, 2}
    # the label columns come from the label set, row for row
    joined = pl.from_pandas(
        pd.DataFrame(
            {
                "symbol": ts.entities["symbol"],
                "event_timestamp": pd.to_datetime(ts.event_ts, utc=True),
                "y": [CLASSES[k] for k in ts.y],
                "rr": ts.realized_rr,
            }
        )
    ).join(
        labels.with_columns(pl.col("event_timestamp").dt.cast_time_unit("ns")),
        on=["symbol", "event_timestamp"],
    )
    assert joined.height == len(ts)
    assert (joined["y"] == joined["tb_label"]).all()
    assert np.allclose(joined["rr"].to_numpy(), joined["tb_reward_risk"].to_numpy())
    # features are those of the decision bar itself (event time = its close), never later
    features = pl.read_parquet(Lake(Path(feast.lake_root)).glob("features/features_1m"))
    pick = np.linspace(500, len(ts) - 1, 25).astype(int)
    for i in pick:
        when = utc_datetime(ts.event_ts[i])
        row = features.filter(
            (pl.col("symbol") == ts.entities["symbol"][i]) & (pl.col("event_timestamp") == when)
        )
        assert row.height == 1
        for name in ("ret_15", "rsi_14", "tf1h_ret_1"):
            expected, got = row[name][0], float(ts.X[name].iloc[i])
            assert np.isnan(got) if expected is None else np.isclose(float(expected), got)


def test_label_spec_mismatch_and_missing_labels_are_clear_errors(feast: FeastResource) -> None:
    start, end = _window()
    other = ScopeConfig(exchange=EXCHANGE, symbols=list(SYMBOLS), horizon=30).to_scope("x")
    with pytest.raises(TrainingDataError, match=r"labels_1m/.*label spec .*horizon.: 15"):
        FeastTrainingData(feast=feast).training_source(other).load("x", start, end)
    nobody = ScopeConfig(exchange="nowhere", symbols=["BTC/USDT"]).to_scope("y")
    with pytest.raises(TrainingDataError, match="no label files of labels/labels_1m"):
        FeastTrainingData(feast=feast).training_source(nobody).load("y", start, end)


def test_a_request_trained_from_feast_is_registered_and_scores_the_online_store(
    feast: FeastResource, clean_db: str, tmp_path: Path
) -> None:
    data = FeastTrainingData(feast=feast)
    db = TimescaleResource(database_url=clean_db)
    request = db.run(lambda c: queue.enqueue(c, reason="feast path"))
    [item] = db.run(lambda c: queue.claim(c))
    start, end = _window()
    cfg = TrainerConfig(
        n_trials=2,
        max_rounds=30,
        early_stopping_rounds=5,
        num_threads=1,
        tune_max_rows=None,
        momentum_feature=SCOPE.momentum_feature,
        embargo=timedelta(minutes=15),
    )
    trained = train_request(
        db.run,
        TrainingRun(
            queue_id=item.id,
            attempt=item.attempts,
            scope=SCOPE,
            source=data.training_source(SCOPE),
            served_features=data.served_features(SCOPE),
            cfg=cfg,
            storage=None,
            models_dir=tmp_path / "models",
            reports_dir=tmp_path / "reports",
            policy=PromotionPolicy(),
            now=end,
        ),
    )
    record = db.run(lambda c: registry.get_model(c, trained.model_id))
    assert record is not None and record.feature_service == "signals_v1"
    assert record.features == list(cat.BASE_FAMILY.features)
    assert record.train_start is not None and record.train_start >= start
    assert record.holdout_end is not None and record.holdout_end < end
    # three days cannot fill the 1h/4h windows (MACD needs 139 bars): the gate names exactly
    # the features that are mostly empty, and none as unserved
    gate = next(g for g in trained.gates if g.name == "no_feature_missing")
    sparse = sorted(f for f, share in record.metrics["null_share"].items() if share > 0.5)
    assert sparse and all(f.startswith(("tf1h_", "tf4h_")) for f in sparse)
    assert not gate.passed and gate.reasons == [f"null in more than 50% of training rows: {sparse}"]
    done = db.run(lambda c: queue.get(c, request.id))
    assert done is not None and done.status == "completed"
    assert done.config["window"] == [(end - SCOPE.lookback).isoformat(), end.isoformat()]

    model = registry.load_model(record)
    materialize_views(feast.store(), ["features_1m"])
    latest = data.online_source().latest(SCOPE, model.features)
    assert sorted(latest.entities["symbol"]) == sorted(SYMBOLS)
    last_open = datetime.combine(DAYS[-1], datetime.max.time(), UTC).replace(
        second=0, microsecond=0
    )
    assert set(latest.entities["ts"]) == {pd.Timestamp(last_open)}
    rows = score(model, latest, SCOPE, momentum_threshold=0.001)
    assert db.run(lambda c: write_signals(c, rows)) == 2
    stored = db.run(
        lambda c: c.fetch(
            "SELECT ts, tf, features, latency_ms FROM signals.signals WHERE model_id = $1",
            model.model_id,
        )
    )
    assert {r["ts"] for r in stored} == {last_open} and {r["tf"] for r in stored} == {"1m"}
    assert all(set(json.loads(r["features"])) == set(model.features) for r in stored)
    assert all(r["latency_ms"] >= latest.fetch_ms > 0 for r in stored)

    recent = data.recent_features(SCOPE, model.features, end - timedelta(hours=6), end)
    assert len(recent) == 2 * 6 * 60 and list(recent.columns) == model.features
