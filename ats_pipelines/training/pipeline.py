"""One retrain request from claim to registered challenger (Dagster-free; the ``lgbm_model``
asset and the demo call :func:`train_request`).

1. check the claim is still ours (status processing, same attempt) and beat;
2. fix the data window on the first attempt (kept in the request's config, so a reclaimed
   attempt trains on the same rows and resumes the same Optuna trials);
3. load the training set, the current champion (to score it on the same holdout);
4. tune, fit, evaluate (:func:`ats_pipelines.training.trainer.train_model`), beating the queue
   heartbeat after every trial;
5. write the artifact, register the challenger, write the model report;
6. mark the request completed — or, on any error, failed with the error (then re-raise).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from ats_pipelines.lib.timeframes import floor_datetime
from ats_pipelines.training import queue, registry
from ats_pipelines.training.config import ModelScope
from ats_pipelines.training.dataset import (
    TrainingDataError,
    TrainingSet,
    TrainingSetSource,
    utc_datetime,
)
from ats_pipelines.training.promotion import (
    Gate,
    PromotionPolicy,
    beats_baselines,
    beats_champion,
    no_feature_missing,
)
from ats_pipelines.training.report import ReportData, report_data, write_report
from ats_pipelines.training.trainer import TrainerConfig, TrainResult, open_study, train_model

log = logging.getLogger(__name__)
T = TypeVar("T")
RunDb = Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Any]


@dataclass
class TrainedModel:
    model_id: str
    scope: str
    queue_id: int
    champion_at_training: str | None
    record: registry.ModelRecord
    result: TrainResult
    report: ReportData
    report_paths: tuple[Path, Path]
    gates: list[Gate]

    def handle(self) -> dict[str, Any]:
        """What downstream steps (checks, promotion) need: small and picklable."""
        return {
            "model_id": self.model_id,
            "scope": self.scope,
            "queue_id": self.queue_id,
            "champion_at_training": self.champion_at_training,
        }


def null_shares(X: pd.DataFrame) -> dict[str, float]:
    if not len(X):
        return {str(c): 1.0 for c in X.columns}
    shares = X.isna().to_numpy().mean(axis=0)
    return {str(c): float(v) for c, v in zip(X.columns, shares, strict=True)}


def gates_for(
    metrics: dict[str, Any], features: list[str], policy: PromotionPolicy, champion_id: str | None
) -> list[Gate]:
    return [
        beats_baselines(metrics, policy),
        beats_champion(metrics, policy, champion_id),
        no_feature_missing(
            features, metrics.get("served_features"), metrics.get("null_share", {}), policy
        ),
    ]


def data_window(
    item: queue.QueueItem, scope: ModelScope, now: datetime
) -> tuple[datetime, datetime]:
    """The request's window: fixed in its config, or [now - lookback, now floored to a bar)."""
    fixed = item.config.get("window")
    if fixed:
        return datetime.fromisoformat(fixed[0]), datetime.fromisoformat(fixed[1])
    end = floor_datetime(now.astimezone(UTC), scope.timeframe)
    return end - scope.lookback, end


def _champion_predictor(record: registry.ModelRecord | None) -> tuple[Any, list[str]] | None:
    if record is None:
        return None
    try:
        loaded = registry.load_model(record)
    except registry.RegistryError as exc:
        log.warning("event=champion_unloadable model=%s error=%s", record.model_id, exc)
        return (lambda _X: np.full((len(_X), 3), np.nan)), ["<artifact missing>"]
    return loaded.predict_proba, loaded.features


FinalFit = Callable[[dict[str, Any], TrainingSet, int], lgb.Booster]


@dataclass(frozen=True)
class TrainingRun:
    """Everything one training run of a claimed request needs, passed as one value."""

    queue_id: int
    attempt: int
    scope: ModelScope
    source: TrainingSetSource
    served_features: list[str] | None
    cfg: TrainerConfig
    storage: str | optuna.storages.BaseStorage | None
    models_dir: Path
    reports_dir: Path
    policy: PromotionPolicy
    run_id: str | None = None
    now: datetime | None = None  # None: when the run starts
    final_fit: FinalFit | None = None


def train_request(run_db: RunDb, run: TrainingRun) -> TrainedModel:
    """Serve one claimed request (see the module docstring); failures mark it failed."""
    queue_id, attempt, run_id = run.queue_id, run.attempt, run.run_id
    try:
        return _train(run_db, run, run.now or datetime.now(UTC))
    except queue.StaleClaim:
        raise  # not ours any more: the current holder owns the row's status
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        log.error(
            "event=training_failed queue_id=%s attempt=%s error=%s", queue_id, attempt, message
        )
        with contextlib.suppress(queue.StaleClaim):
            run_db(lambda c: queue.fail(c, queue_id, attempt, message, run_id=run_id))
        raise


def _training_set(run_db: RunDb, run: TrainingRun, now: datetime) -> TrainingSet:
    """Check the claim and beat; fix the window on the first attempt; load the rows."""
    queue_id, scope = run.queue_id, run.scope
    item = run_db(lambda c: queue.get(c, queue_id))
    if item is None:
        raise queue.StaleClaim(f"retrain request {queue_id} does not exist")
    if item.scope != scope.name:
        raise TrainingDataError(f"request {queue_id} is for scope {item.scope}, not {scope.name}")
    run_db(lambda c: queue.heartbeat(c, queue_id, run.attempt, run_id=run.run_id))
    start, end = data_window(item, scope, now)
    if "window" not in item.config:
        run_db(
            lambda c: queue.update_config(
                c, queue_id, {"window": [start.isoformat(), end.isoformat()]}
            )
        )
    data = run.source.load(scope.name, start, end)
    if not len(data):
        raise TrainingDataError(
            f"no training rows for scope {scope.name} in [{start}, {end}) "
            f"from feature service {scope.feature_service}"
        )
    return data


def _register(
    run_db: RunDb,
    run: TrainingRun,
    model_id: str,
    data: TrainingSet,
    result: TrainResult,
    metrics: dict[str, Any],
) -> registry.ModelRecord:
    """Write the artifact and register the challenger."""
    path = registry.save_artifact(
        run.models_dir,
        model_id,
        result.booster,
        result.features,
        result.params,
        metrics,
        result.drift_reference,
    )
    windows = [utc_datetime(t) for t in (*result.train_window, *result.holdout_window)]
    return run_db(
        lambda c: registry.register(
            c,
            model_id=model_id,
            scope=run.scope.name,
            feature_service=data.feature_service,
            features=result.features,
            artifact_path=path,
            params=result.params,
            metrics=metrics,
            train_window=(windows[0], windows[1]),
            holdout_window=(windows[2], windows[3]),
            queue_id=run.queue_id,
        )
    )


def _train(run_db: RunDb, run: TrainingRun, now: datetime) -> TrainedModel:
    queue_id, attempt, scope, cfg = run.queue_id, run.attempt, run.scope, run.cfg
    data = _training_set(run_db, run, now)
    champion = run_db(lambda c: registry.champion(c, scope.name))
    champion_id = champion.model_id if champion else None
    request = f"q{queue_id}"
    study = open_study(scope.name, run.storage, request=request, cfg=cfg)
    result = train_model(
        data,
        cfg,
        study,
        request=request,
        champion=_champion_predictor(champion),
        on_trial=lambda: run_db(lambda c: queue.heartbeat(c, queue_id, attempt)),
        final_fit=run.final_fit,
    )
    model_id = registry.model_id_for(scope.name, queue_id)
    metrics = {
        **result.metrics,
        "study": result.study.as_dict(),
        "null_share": null_shares(data.X),
        "served_features": run.served_features,
        "champion_at_training": champion_id,
        "best_iteration": result.best_iteration,
        "seconds": result.seconds,
        "policy": run.policy.as_dict(),
        "queue_id": queue_id,
    }
    gates = gates_for(metrics, result.features, run.policy, champion_id)
    record = _register(run_db, run, model_id, data, result, metrics)
    report = report_data(result, model_id, scope.name, data.feature_service, cfg.momentum_feature)
    report.gates = gates
    paths = write_report(report, run.reports_dir)
    run_db(lambda c: queue.complete(c, queue_id, attempt, run_id=run.run_id))
    log.info(
        "event=model_registered model=%s scope=%s queue_id=%s report=%s",
        model_id,
        scope.name,
        queue_id,
        paths[1],
    )
    return TrainedModel(
        model_id=model_id,
        scope=scope.name,
        queue_id=queue_id,
        champion_at_training=champion_id,
        record=record,
        result=result,
        report=report,
        report_paths=paths,
        gates=gates,
    )
