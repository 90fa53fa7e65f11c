"""Jobs of the training domain: the training run, a retrain request (the UI's and the weekly
schedule's door into the queue), predictions, outcomes and drift."""

import importlib
from typing import Any

import dagster as dg

from ats_pipelines.config import ConfigError
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.training import queue

TRAINING_JOB = "training_job"
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def executor_for(name: str) -> dg.ExecutorDefinition:
    """``in_process``, ``multiprocess`` or ``module:attribute`` of an executor definition
    (``dagster_k8s:k8s_job_executor``, ``dagster_celery:celery_executor`` …)."""
    if name in EXECUTORS:
        return EXECUTORS[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ConfigError(
            f"ATS_TRAINING_EXECUTOR={name!r}: use in_process, multiprocess or module:attribute"
        )
    try:
        executor = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"ATS_TRAINING_EXECUTOR={name!r} cannot be imported ({exc}); install "
            "the package providing it"
        ) from exc
    if not isinstance(executor, dg.ExecutorDefinition):
        raise ConfigError(f"ATS_TRAINING_EXECUTOR={name!r} is not a Dagster executor")
    return executor


def build_training_job(executor: str = "in_process") -> Any:
    return dg.define_asset_job(
        TRAINING_JOB,
        selection=dg.AssetSelection.assets("lgbm_model", "champion_model"),
        executor_def=executor_for(executor),
        description="Train a challenger for one claimed retrain request, run the blocking "
        "promotion checks, and promote it if they pass (launched by the queue "
        "sensor; run key = queue id).",
        tags={"ats/domain": "training"},
    )


class RetrainRequestConfig(dg.Config):
    """A retrain request: which model scope, why, how urgent (1 most urgent .. 5)."""

    scope: str = "default"
    reason: str = "manual request from the Dagster UI"
    priority: int = 2
    requested_by: str = "ui"
    n_trials: int | None = None  # override the trial budget of this request
    timeout_s: float | None = None


@dg.op(description="Put a retrain request on the queue (coalesces with a pending one).")
def enqueue_retrain(
    context: dg.OpExecutionContext, config: RetrainRequestConfig, timescale: TimescaleResource
) -> dg.Output[int]:
    """Enqueue one retrain request."""
    extra = {
        k: v
        for k, v in (("n_trials", config.n_trials), ("timeout_s", config.timeout_s))
        if v is not None
    }
    result = timescale.run(
        lambda c: queue.enqueue(
            c,
            scope=config.scope,
            reason=config.reason,
            priority=config.priority,
            requested_by=config.requested_by,
            config=extra,
        )
    )
    context.log.info(
        f"event=retrain_enqueued queue_id={result.id} scope={config.scope} "
        f"priority={result.priority} coalesced={result.coalesced}"
    )
    return dg.Output(
        result.id,
        metadata={
            "queue_id": result.id,
            "scope": config.scope,
            "priority": result.priority,
            "coalesced": result.coalesced,
        },
    )


@dg.job(
    description="Request a retrain (from the UI's launchpad or the weekly schedule).",
    tags={"ats/domain": "training"},
)
def retrain_request_job() -> None:
    enqueue_retrain()


predictions_job = dg.define_asset_job(
    "predictions_job",
    selection=dg.AssetSelection.assets("predictions"),
    description="Score the latest online features with every champion into signals.",
)
signal_outcomes_job = dg.define_asset_job(
    "signal_outcomes_job",
    selection=dg.AssetSelection.assets("signal_outcomes", "live_model_performance"),
    description="Fill realised outcomes of signals and check the live models for degradation.",
)
feature_drift_job = dg.define_asset_job(
    "feature_drift_job",
    selection=dg.AssetSelection.assets("feature_drift"),
    description="Population stability of recent features vs each champion's training window.",
)
