"""Blocking promotion checks of ``lgbm_model``: a challenger becomes champion only if it beats
both baselines and the current champion on the holdout and no feature is missing.

A failing check marks the challenger ``rejected`` in the registry (with why), and, being
blocking, keeps ``champion_model`` from running in the same run.
"""

from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import TrainingDataResource
from ats_pipelines.training import registry
from ats_pipelines.training.promotion import (
    Gate,
    beats_baselines,
    beats_champion,
    no_feature_missing,
)


def _result(gate: Gate, model_id: str, timescale: TimescaleResource) -> dg.AssetCheckResult:
    if not gate.passed:
        timescale.run(
            lambda c: registry.reject(c, model_id, [f"{gate.name}: {r}" for r in gate.reasons])
        )
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(gate.reasons) or None,
        metadata={
            "model_id": model_id,
            **{
                k: v if isinstance(v, int | float | str) else str(v)
                for k, v in gate.values.items()
                if v is not None
            },
        },
    )


def _record(timescale: TimescaleResource, model_id: str) -> registry.ModelRecord:
    record = timescale.run(lambda c: registry.get_model(c, model_id))
    if record is None:
        raise registry.RegistryError(f"model {model_id} is not in the registry")
    return record


@dg.asset_check(
    asset="lgbm_model",
    blocking=True,
    description="Holdout log-loss and realised R per signal beat the class prior "
    "and the momentum rule by the configured margins.",
)
def beats_baselines_check(
    lgbm_model: dict[str, Any], timescale: TimescaleResource, models: ModelsResource
) -> dg.AssetCheckResult:
    """The challenger beats the class-prior and momentum baselines on the holdout."""
    record = _record(timescale, lgbm_model["model_id"])
    return _result(
        beats_baselines(record.metrics, models.promotion_policy()), record.model_id, timescale
    )


@dg.asset_check(
    asset="lgbm_model",
    blocking=True,
    description="On the same holdout rows the challenger beats the champion it was "
    "trained against, and that champion is still the champion.",
)
def beats_champion_check(
    lgbm_model: dict[str, Any], timescale: TimescaleResource, models: ModelsResource
) -> dg.AssetCheckResult:
    """The challenger beats the current champion on the holdout (passes without one)."""
    record = _record(timescale, lgbm_model["model_id"])
    compared = lgbm_model["champion_at_training"]

    async def current(conn: asyncpg.Connection) -> str | None:
        found = await registry.champion(conn, record.scope)
        return found.model_id if found else None

    now = timescale.run(current)
    if now != compared:
        gate = Gate(
            "beats_champion",
            False,
            [f"the champion changed since training ({compared} -> {now}); retrain"],
        )
    else:
        gate = beats_champion(record.metrics, models.promotion_policy(), compared)
    return _result(gate, record.model_id, timescale)


@dg.asset_check(
    asset="lgbm_model",
    blocking=True,
    description="Every model feature is served by the feature service now and was "
    "populated in training.",
)
def no_feature_missing_check(
    lgbm_model: dict[str, Any],
    timescale: TimescaleResource,
    models: ModelsResource,
    training_data: TrainingDataResource,
) -> dg.AssetCheckResult:
    """No model feature is missing from the feature service or empty in training."""
    record = _record(timescale, lgbm_model["model_id"])
    served = training_data.served_features(models.scope(record.scope))
    gate = no_feature_missing(
        record.features, served, record.metrics.get("null_share", {}), models.promotion_policy()
    )
    return _result(gate, record.model_id, timescale)
