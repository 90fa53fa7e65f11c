"""Optuna-tuned LightGBM on purged walk-forward folds, a final fit, and the holdout evaluation.

One training run:

1. the most recent ``holdout_fraction`` of time is held out; training rows whose label was not
   known before it (minus the embargo) are purged;
2. the LightGBM ``Dataset`` of the training window is binned **once**; every fold is a subset of
   it (same bin mappers, no re-binning) and the fold datasets are reused by every trial;
3. each Optuna trial (TPE) trains the folds in lock-step, one boosting round at a time, stops
   early on the mean validation log-loss and reports it to the pruner, which stops trials that
   are worse than the median of this request's trials at the same round;
4. the best parameters are refitted on the whole training window for the best mean round count;
5. the holdout is scored by the model, both baselines and (when given) the current champion.

Tuning may use only the most recent ``tune_max_rows`` training rows (folds are cut on those),
which bounds the cost of a trial however long the history; the final fit always uses all rows.
The study (``ats:<scope>``) is shared by every retrain of a scope (TPE warm-starts from earlier
requests); trials carry the queue id, and a resumed request only runs its missing trials and
only compares its own trials (pruning and the best trial).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from ats_pipelines.training import drift
from ats_pipelines.training.dataset import CLASSES, TrainingDataError, TrainingSet
from ats_pipelines.training.evaluation import (
    ClassPrior,
    MomentumRule,
    evaluate,
    evaluate_rule,
)
from ats_pipelines.training.walkforward import holdout_split, purged_walk_forward

log = logging.getLogger(__name__)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class TrainingError(RuntimeError):
    """Training could not produce a model (the message says which step and why)."""


@dataclass(frozen=True)
class TrainerConfig:
    """Budget and validation scheme of one training run."""

    n_trials: int = 30
    timeout_s: float | None = None
    n_splits: int = 3
    holdout_fraction: float = 0.2
    embargo: timedelta = timedelta(0)
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    num_threads: int = 2
    max_bin: int = 63
    tune_max_rows: int | None = 300_000
    report_every: int = 5
    seed: int = 7
    n_startup_trials: int = 5  # trials of this request before the pruner may prune
    warmup_rounds: int = 20  # rounds of a trial before it may be pruned
    momentum_feature: str = "momentum"

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ValueError(f"n_trials={self.n_trials}: at least one trial")
        if self.max_rounds < 1 or self.early_stopping_rounds < 1:
            raise ValueError("max_rounds and early_stopping_rounds must be positive")


@dataclass(frozen=True)
class StudySummary:
    name: str
    trials: int  # this request's finished trials (including earlier attempts)
    completed: int
    pruned: int
    run_this_attempt: int
    best_value: float
    seconds_tuning: float

    @property
    def pruned_share(self) -> float:
        return self.pruned / self.trials if self.trials else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "study": self.name,
            "trials": self.trials,
            "completed": self.completed,
            "pruned": self.pruned,
            "pruned_share": round(self.pruned_share, 4),
            "run_this_attempt": self.run_this_attempt,
            "best_cv_log_loss": self.best_value,
            "seconds_tuning": round(self.seconds_tuning, 3),
        }


@dataclass
class TrainResult:
    booster: lgb.Booster
    features: list[str]
    params: dict[str, Any]
    best_iteration: int
    metrics: dict[str, Any]  # holdout metrics of "model", "prior", "momentum", maybe "champion"
    study: StudySummary
    train_rows: int
    train_window: tuple[np.datetime64, np.datetime64]
    holdout_window: tuple[np.datetime64, np.datetime64]
    importance: dict[str, float]
    drift_reference: dict[str, Any]
    holdout: TrainingSet
    holdout_proba: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


Predictor = Callable[[pd.DataFrame], np.ndarray]  # features frame -> class probabilities


def base_params(cfg: TrainerConfig) -> dict[str, Any]:
    return {
        "objective": "multiclass",
        "num_class": len(CLASSES),
        "metric": "multi_logloss",
        "num_threads": cfg.num_threads,
        "verbosity": -1,
        "seed": cfg.seed,
        "force_col_wise": True,
        "bagging_freq": 1,
    }


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 1000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.4, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


class RequestMedianPruner(optuna.pruners.BasePruner):
    """Median pruning against the finished trials of the same retrain request only.

    The study is shared by every retrain of a scope, but earlier requests saw other data, so
    their learning curves are no yardstick for this one.
    """

    def __init__(self, request: str, n_startup_trials: int, warmup_steps: int) -> None:
        self.request, self.n_startup, self.warmup = request, n_startup_trials, warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.warmup:
            return False
        peers = [
            t
            for t in study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get("request") == self.request
        ]
        if sum(t.state == optuna.trial.TrialState.COMPLETE for t in peers) < self.n_startup:
            return False
        values = [t.intermediate_values[step] for t in peers if step in t.intermediate_values]
        return bool(values) and trial.intermediate_values[step] > float(np.median(values))


def rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's PostgreSQL storage. Workers starting together on a fresh database all create
    its tables; PostgreSQL lets one win and fails the others (a duplicate type or key), so a
    loser retries and finds the tables there (measured: 1 of 3 two-process starts failed)."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(
    scope: str,
    storage: str | optuna.storages.BaseStorage | None,
    *,
    request: str,
    cfg: TrainerConfig,
) -> optuna.Study:
    """The scope's study (created on first use), with this request's pruner."""
    if isinstance(storage, str):
        storage = rdb_storage(storage)
    return optuna.create_study(
        study_name=f"ats:{scope}",
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.n_startup_trials),
        pruner=RequestMedianPruner(request, cfg.n_startup_trials, cfg.warmup_rounds),
    )


def _lockstep_cv(
    params: dict[str, Any],
    folds: list[tuple[lgb.Dataset, lgb.Dataset]],
    cfg: TrainerConfig,
    trial: optuna.Trial | None,
) -> tuple[float, int]:
    """Train every fold one round at a time; early stopping and pruning on the mean loss."""
    boosters = []
    for train, valid in folds:
        booster = lgb.Booster(params=params, train_set=train)
        booster.add_valid(valid, "valid")
        boosters.append(booster)
    best, best_round, since = math.inf, 0, 0
    for rnd in range(1, cfg.max_rounds + 1):
        losses = []
        for booster in boosters:
            booster.update()
            losses.append(booster.eval_valid()[0][2])
        mean = float(np.mean(losses))
        if mean < best - 1e-7:
            best, best_round, since = mean, rnd, 0
        else:
            since += 1
            if since >= cfg.early_stopping_rounds:
                break
        if trial is not None and rnd % cfg.report_every == 0:
            trial.report(best, step=rnd)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {rnd} (mean log-loss {best:.5f})")
    return best, best_round


def _dataset(X: np.ndarray, y: np.ndarray, features: list[str], cfg: TrainerConfig) -> lgb.Dataset:
    return lgb.Dataset(
        X,
        label=y,
        feature_name=features,
        free_raw_data=False,
        params={
            "max_bin": cfg.max_bin,
            "feature_pre_filter": False,
            "verbosity": -1,
            "num_threads": cfg.num_threads,
        },
    ).construct()


def _request_trials(study: optuna.Study, request: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if t.user_attrs.get("request") == request
    ]


def tune(
    train: TrainingSet,
    full: lgb.Dataset,
    cfg: TrainerConfig,
    study: optuna.Study,
    *,
    request: str,
    on_trial: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], int, StudySummary]:
    """Run this request's missing trials; the best parameters and round count."""
    started = time.perf_counter()
    offset = 0 if cfg.tune_max_rows is None else max(0, len(train) - cfg.tune_max_rows)
    folds = purged_walk_forward(
        train.event_ts[offset:],
        train.label_end_ts[offset:],
        n_splits=cfg.n_splits,
        embargo=cfg.embargo,
        min_train_rows=50,
    )
    fold_sets = [
        (
            full.subset((f.train + offset).tolist()).construct(),
            full.subset((f.valid + offset).tolist()).construct(),
        )
        for f in folds
    ]

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("request", request)
        params = {**base_params(cfg), **suggest(trial)}
        value, rounds = _lockstep_cv(params, fold_sets, cfg, trial)
        trial.set_user_attr("best_round", rounds)
        return value

    done = len(_request_trials(study, request))
    remaining = max(0, cfg.n_trials - done)
    callbacks = [lambda _study, _trial: on_trial()] if on_trial else None
    if remaining:
        study.optimize(
            objective, n_trials=remaining, timeout=cfg.timeout_s, callbacks=callbacks, catch=()
        )
    mine = _request_trials(study, request)
    complete = [t for t in mine if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise TrainingError(
            f"no Optuna trial of request {request} completed "
            f"({len(mine)} pruned); raise n_trials or timeout"
        )
    best = min(complete, key=lambda t: t.value if t.value is not None else math.inf)
    summary = StudySummary(
        name=study.study_name,
        trials=len(mine),
        completed=len(complete),
        pruned=len(mine) - len(complete),
        run_this_attempt=len(mine) - done,
        best_value=float(best.value or math.nan),
        seconds_tuning=time.perf_counter() - started,
    )
    params = {**base_params(cfg), **best.params}
    return params, max(1, int(best.user_attrs.get("best_round", cfg.max_rounds))), summary


def fit(full: lgb.Dataset, params: dict[str, Any], rounds: int) -> lgb.Booster:
    booster = lgb.Booster(params=params, train_set=full)
    for _ in range(rounds):
        booster.update()
    return booster


def predict_proba(
    booster: lgb.Booster, X: pd.DataFrame, features: list[str], num_threads: int = 0
) -> np.ndarray:
    """Class probabilities for the model's ``features`` (in the model's order)."""
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise TrainingDataError(f"features missing for prediction: {missing}")
    values = X[features].to_numpy(np.float32)
    return np.asarray(booster.predict(values, num_threads=num_threads)).reshape(len(X), -1)


def holdout_metrics(
    train: TrainingSet,
    holdout: TrainingSet,
    proba: np.ndarray,
    momentum_feature: str,
    champion: tuple[Predictor, list[str]] | None,
) -> dict[str, Any]:
    """The model, both baselines and (if it can score these rows) the champion, on the
    holdout."""
    if momentum_feature not in train.X.columns:
        raise TrainingDataError(
            f"momentum baseline: feature {momentum_feature!r} is not in the "
            f"training set (columns: {train.features[:10]}...)"
        )
    y, rr = holdout.y, holdout.realized_rr
    prior = ClassPrior.fit(train.y)
    rule = MomentumRule.fit(train.X[momentum_feature].to_numpy(), train.y)
    mom = holdout.X[momentum_feature].to_numpy()
    prior_proba = prior.predict_proba(len(y))
    out: dict[str, Any] = {
        "model": evaluate(y, proba, rr),
        "prior": evaluate_rule(y, prior_proba, prior_proba.argmax(axis=1), rr),
        "momentum": evaluate_rule(y, rule.predict_proba(mom), rule.predict(mom), rr),
    }
    out["momentum"]["threshold"] = rule.threshold
    if champion is not None:
        predictor, needed = champion
        missing = [f for f in needed if f not in holdout.X.columns]
        out["champion"] = (
            {"comparable": False, "missing_features": missing}
            if missing
            else {"comparable": True, **evaluate(y, predictor(holdout.X), rr)}
        )
    return out


def train_model(
    data: TrainingSet,
    cfg: TrainerConfig,
    study: optuna.Study,
    *,
    request: str,
    on_trial: Callable[[], None] | None = None,
    champion: tuple[Predictor, list[str]] | None = None,
    final_fit: Callable[[dict[str, Any], TrainingSet, int], lgb.Booster] | None = None,
) -> TrainResult:
    """Tune, fit and evaluate a model on ``data`` (see the module docstring)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if len(data) < 200:
        raise TrainingDataError(f"training set has {len(data)} rows; need at least 200")
    embargo = np.timedelta64(cfg.embargo, "ns")
    train_idx, holdout_idx = holdout_split(
        data.event_ts, data.label_end_ts, fraction=cfg.holdout_fraction, embargo=embargo
    )
    train, holdout = data.take(train_idx), data.take(holdout_idx)
    features = train.features
    full = _dataset(train.X.to_numpy(np.float32), train.y, features, cfg)
    timings["dataset"] = time.perf_counter() - t0
    params, rounds, summary = tune(train, full, cfg, study, request=request, on_trial=on_trial)
    timings["tuning"] = summary.seconds_tuning
    if on_trial is not None:  # the final fit can take as long as several trials: beat first
        on_trial()
    t1 = time.perf_counter()
    booster = final_fit(params, train, rounds) if final_fit else fit(full, params, rounds)
    timings["final_fit"] = time.perf_counter() - t1
    proba = predict_proba(booster, holdout.X, features, cfg.num_threads)
    metrics = holdout_metrics(train, holdout, proba, cfg.momentum_feature, champion)
    gains = booster.feature_importance("gain")
    timings["total"] = time.perf_counter() - t0
    log.info(
        "event=trained request=%s rows=%d holdout=%d trials=%d pruned=%d rounds=%d "
        "log_loss=%.5f prior=%.5f momentum=%.5f",
        request,
        len(train),
        len(holdout),
        summary.trials,
        summary.pruned,
        rounds,
        metrics["model"]["log_loss"],
        metrics["prior"]["log_loss"],
        metrics["momentum"]["log_loss"],
    )
    return TrainResult(
        booster=booster,
        features=features,
        params=params,
        best_iteration=rounds,
        metrics=metrics,
        study=summary,
        train_rows=len(train),
        train_window=(train.event_ts[0], train.event_ts[-1]),
        holdout_window=(holdout.event_ts[0], holdout.event_ts[-1]),
        importance={f: float(g) for f, g in zip(features, gains, strict=True)},
        drift_reference=drift.reference(train.X),
        holdout=holdout,
        holdout_proba=proba,
        seconds=timings,
    )
