"""Feature, label and prediction suites on frames computed from real XRP/ETH bars (pass) and on
broken copies (fail, naming the rule and the rows). Features and labels come from the features
domain's own computation (``series_features``, ``series_labels``) on bars the platform's
aggregator built from the real trades."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.compute import series_features
from ats_pipelines.features.labels import LabelSpec, series_labels
from ats_pipelines.lib.bars import aggregate_trades
from ats_pipelines.quality import features_spec
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.quality.validate import check_features, check_labels, check_signals
from tests.quality.conftest import NOW, predictions_of
from tests.quality.test_suites_market import rows_of, set_at

FAMILY = cat.family_of("1m")
POLICY = QualityPolicy(feature_ranges=features_spec.ranges(FAMILY.features, 1e12))
LABELS = ("label", "tb_label")


@pytest.fixture(scope="module")
def bars(xrp_trades: pl.DataFrame) -> pl.DataFrame:
    return aggregate_trades(
        xrp_trades, ["1m"], exchange="binance", symbol="XRP/ETH", ts_col="ts", id_col="trade_id"
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


@pytest.fixture(scope="module")
def features(bars: pl.DataFrame) -> pl.DataFrame:
    return series_features(bars, "1m")


def check(frame: pl.DataFrame, candles: int) -> SuiteOutcome:
    return check_features(
        frame,
        columns=FAMILY.features,
        policy=POLICY,
        required=features_spec.required(FAMILY.features),
        warmup_rows=features_spec.warmup_rows({"XRP/ETH": 0}),
        candle_rows={"XRP/ETH": candles},
    )


def test_platform_features_of_real_bars_pass(features: pl.DataFrame, bars: pl.DataFrame) -> None:
    assert features.head(100)["macd_signal"].null_count() > 0  # the warm-up really is null
    outcome = check(features, bars.height)
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == bars.height == 2469


def test_broken_features_fail(features: pl.DataFrame, bars: pl.DataFrame) -> None:
    broken = set_at(features, 400, ret_5=None)
    broken = set_at(broken, 500, rsi_14=140.0)
    broken = set_at(broken, 600, close_position=-0.2)
    broken = set_at(broken, 700, imbalance_5=1.7)  # nullable, but never out of range
    broken = broken.filter(pl.int_range(pl.len()) < 2000)  # rows lost: 2000 of 2469 bars
    outcome = check(broken, bars.height)
    assert rows_of(outcome, "features.no_nulls") == {400}
    assert rows_of(outcome, "features.range") == {500, 600, 700}
    assert rows_of(outcome, "features.rows_vs_candles", key="symbol") == {"XRP/ETH"}
    ratio = next(f for f in outcome.failures if f.rule == "features.rows_vs_candles")
    assert ratio.sample[0]["rows"] == 2000 and ratio.sample[0]["candles"] == 2469


def test_platform_labels_pass_and_skewed_labels_fail(bars: pl.DataFrame) -> None:
    labels = series_labels(bars, LabelSpec())
    assert check_labels(labels, policy=POLICY, label_cols=LABELS).success

    all_hold = labels.with_columns(pl.lit("HOLD").alias("label"))
    outcome = check_labels(all_hold, policy=POLICY, label_cols=LABELS)
    assert outcome.failed_rules == ["labels.class_balance"]
    observed = {f.columns: f.observed for f in outcome.failures}
    assert observed == {
        ("_is_label_BUY",): "0.0",
        ("_is_label_SELL",): "0.0",
        ("_is_label_HOLD",): "1.0",
    }

    odd = set_at(set_at(labels, 10, tb_label="LONG"), 20, label=None)
    outcome = check_labels(odd, policy=POLICY, label_cols=LABELS)
    assert rows_of(outcome, "labels.classes") == {10}
    assert rows_of(outcome, "labels.no_nulls") == {20}


def test_real_predictions_pass(xrp_candles: pl.DataFrame) -> None:
    predictions = predictions_of(xrp_candles)
    outcome = check_signals(predictions, now=NOW)
    assert outcome.success, [f.line() for f in outcome.failures]


def test_broken_predictions_fail(xrp_candles: pl.DataFrame) -> None:
    p = predictions_of(xrp_candles)
    probas = json.loads(p["probas"][30])
    broken = set_at(p, 10, proba=1.2)
    broken = set_at(broken, 30, probas=json.dumps({**probas, "HOLD": probas["HOLD"] + 0.3}))
    broken = set_at(broken, 40, pred="SELL" if p["pred"][40] != "SELL" else "BUY")
    broken = pl.concat([broken, p[50:51]])  # the same bar and model twice
    outcome = check_signals(broken, now=NOW)
    assert 10 in rows_of(outcome, "signals.proba_range")
    assert rows_of(outcome, "signals.probas_sum") == {30}
    assert 40 in rows_of(outcome, "signals.proba_is_pred")
    assert rows_of(outcome, "signals.one_per_bar") == {50, p.height}
