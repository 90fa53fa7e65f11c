"""The trainer and the promotion gates on synthetic data: a planted signal beats both baselines
and passes; pure noise does not. Studies resume per request on PostgreSQL storage."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import optuna
import pytest

from ats_pipelines.training.config import sqlalchemy_url
from ats_pipelines.training.evaluation import ClassPrior, MomentumRule, auc_binary, trading
from ats_pipelines.training.promotion import PromotionPolicy, beats_baselines, beats_champion
from ats_pipelines.training.synthetic import make_training_set
from ats_pipelines.training.trainer import TrainerConfig, open_study, train_model

CFG = TrainerConfig(
    n_trials=5,
    max_rounds=120,
    early_stopping_rounds=15,
    num_threads=1,
    tune_max_rows=None,
    embargo=timedelta(hours=6),
    n_startup_trials=3,
    warmup_rounds=10,
)


def _train(
    kind: str, seed: int = 3, cfg: TrainerConfig = CFG, request: str = "q1", storage: object = None
):
    data = make_training_set(6000, 8, kind=kind, seed=seed, symbols=3)
    study = open_study(f"test-{kind}", storage, request=request, cfg=cfg)  # type: ignore[arg-type]
    return train_model(data, cfg, study, request=request)


def test_a_planted_signal_beats_both_baselines_and_passes_the_gate() -> None:
    result = _train("planted")
    m = result.metrics
    assert m["model"]["log_loss"] < m["prior"]["log_loss"]
    assert m["model"]["log_loss"] < m["momentum"]["log_loss"] < m["prior"]["log_loss"]
    assert m["model"]["auc"] > m["momentum"]["auc"] > 0.5
    assert m["model"]["trading"]["mean_rr"] > m["momentum"]["trading"]["mean_rr"]
    assert m["model"]["trading"]["hit_rate"] > m["momentum"]["trading"]["hit_rate"]
    gate = beats_baselines(m, PromotionPolicy())
    assert gate.passed, gate.reasons
    # the holdout is the latest time, and purged against training labels + embargo
    assert result.holdout_window[0] > result.train_window[1]
    assert set(m["model"]["per_class"]) == {"SELL", "HOLD", "BUY"}
    assert sum(map(sum, m["model"]["confusion"])) == m["model"]["rows"] == len(result.holdout)
    assert max(result.importance, key=result.importance.__getitem__) in {"f00", "f01", "f02"}


def test_pure_noise_fails_the_gate() -> None:
    result = _train("noise")
    gate = beats_baselines(result.metrics, PromotionPolicy())
    assert not gate.passed
    assert any("log-loss" in r for r in gate.reasons)


def test_the_champion_gate_compares_on_the_same_holdout() -> None:
    metrics = {
        "model": {"log_loss": 0.80, "trading": {"mean_rr": 0.3}},
        "champion": {"comparable": True, "log_loss": 0.82, "trading": {"mean_rr": 0.3}},
    }
    assert beats_champion(metrics, PromotionPolicy(), "m-1").passed
    assert beats_champion(metrics, PromotionPolicy(), None).passed  # no champion yet
    worse = {**metrics, "model": {"log_loss": 0.83, "trading": {"mean_rr": 0.3}}}
    assert beats_champion(worse, PromotionPolicy(), "m-1").reasons[0].startswith("log-loss")
    missing = {**metrics, "champion": {"comparable": False, "missing_features": ["x"]}}
    assert "could not be scored" in beats_champion(missing, PromotionPolicy(), "m-1").reasons[0]


def test_a_request_resumes_its_own_trials_in_the_postgres_study(make_database) -> None:
    storage = optuna.storages.RDBStorage(sqlalchemy_url(make_database("ats_optuna_test")))
    small = TrainerConfig(**{**CFG.__dict__, "n_trials": 2})
    first = _train("planted", cfg=small, storage=storage)
    assert (first.study.trials, first.study.run_this_attempt) == (2, 2)
    # the same request again with a bigger budget runs only the missing trials
    again = _train("planted", cfg=TrainerConfig(**{**CFG.__dict__, "n_trials": 3}), storage=storage)
    assert (again.study.trials, again.study.run_this_attempt) == (3, 1)
    # another request of the scope counts its own trials, in the same study
    other = _train("planted", cfg=small, storage=storage, request="q2")
    assert (other.study.trials, other.study.run_this_attempt) == (2, 2)
    study = optuna.load_study(study_name="ats:test-planted", storage=storage)
    assert len(study.trials) == 5
    assert {t.user_attrs["request"] for t in study.trials} == {"q1", "q2"}


def test_baselines_and_trading_metric() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 2, 2])
    prior = ClassPrior.fit(y)
    assert prior.prior.argmax() == 2 and prior.prior.sum() == pytest.approx(1.0)
    momentum = np.array([-2.0, 0.1, 3.0, 1.5, -0.1, -1.3, 2.0, 0.2])
    rule = MomentumRule.fit(momentum, y, quantile=0.4)  # threshold 1.08
    assert list(rule.predict(momentum)) == [0, 1, 2, 2, 1, 0, 2, 1]
    assert np.allclose(rule.predict_proba(momentum).sum(axis=1), 1.0)
    rr = np.array([-1.0, 0.1, 1.0, 1.0, 0.0, -1.0, 1.0, -0.5])
    result = trading(y, rule.predict(momentum), rr)
    # SELL on two falling rows earns +1 each, BUY on three rising rows +1 each
    assert (result.signals, result.hit_rate, result.mean_rr) == (5, 1.0, 1.0)
    assert auc_binary(
        np.array([False, False, True, True]), np.array([0.1, 0.4, 0.35, 0.8])
    ) == pytest.approx(0.75)
