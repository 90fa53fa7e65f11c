"""Feature, label and prediction suites on frames computed from real XRP/ETH bars (pass) and on
broken copies (fail, naming the rule and the rows)."""

from __future__ import annotations

import json

import polars as pl

from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.validate import check_features, check_labels, check_signals
from tests.quality.conftest import FEATURES, NOW, WARMUP, features_of, labels_of, predictions_of
from tests.quality.test_suites_market import rows_of, set_at

POLICY = QualityPolicy(warmup_rows=WARMUP, label_horizon_rows=5,
                       feature_ranges={"rsi_14": (0.0, 100.0), "vol_15": (0.0, 1.0),
                                       "range_pct": (0.0, 1.0)})


def test_real_features_pass(xrp_candles: pl.DataFrame) -> None:
    features = features_of(xrp_candles)
    assert features.head(WARMUP)["vol_15"].null_count() > 0  # the warm-up really is null
    outcome = check_features(features, columns=FEATURES, policy=POLICY,
                             candle_rows={"XRP/ETH": xrp_candles.height})
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == xrp_candles.height


def test_broken_features_fail(xrp_candles: pl.DataFrame) -> None:
    f = features_of(xrp_candles)
    broken = set_at(f, 100, ret_5=None)
    broken = set_at(broken, 200, rsi_14=140.0)
    broken = set_at(broken, 300, vol_15=float("inf"))
    broken = broken.filter(pl.int_range(pl.len()) < 2000)  # rows lost: 2000 of 2469 candles
    outcome = check_features(broken, columns=FEATURES, policy=POLICY,
                             candle_rows={"XRP/ETH": xrp_candles.height})
    assert rows_of(outcome, "features.no_nulls") == {100}
    assert rows_of(outcome, "features.range") == {200, 300}
    assert rows_of(outcome, "features.rows_vs_candles", key="symbol") == {"XRP/ETH"}
    ratio = next(fl for fl in outcome.failures if fl.rule == "features.rows_vs_candles")
    assert ratio.sample[0]["rows"] == 2000 and ratio.sample[0]["candles"] == 2469


def test_real_labels_pass_and_skewed_labels_fail(xrp_candles: pl.DataFrame) -> None:
    labels = labels_of(xrp_candles)
    shares = labels["label"].drop_nulls().value_counts(normalize=True)
    assert shares.height == 3, shares
    assert check_labels(labels, policy=POLICY).success

    all_hold = labels.with_columns(pl.when(pl.col("label").is_not_null())
                                   .then(pl.lit("HOLD")).alias("label"))
    outcome = check_labels(all_hold, policy=POLICY)
    assert outcome.failed_rules == ["labels.class_balance"]
    observed = {fl.columns: fl.observed for fl in outcome.failures}
    assert observed[("_is_HOLD",)] == "1.0" and observed[("_is_BUY",)] == "0.0"

    odd = set_at(set_at(labels, 10, label="LONG"), 20, label=None)
    outcome = check_labels(odd, policy=POLICY)
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
