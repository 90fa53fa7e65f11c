"""Training assets: the challenger a retrain request produces, its promotion, predictions,
their outcomes, the live model's performance and feature drift.

``lgbm_model`` is materialised only by ``training_job`` runs that the retrain-queue sensor
launches (its config names the claimed request); the logic lives in
``ats_pipelines.training``.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import TrainingDataResource
from ats_pipelines.training import queue, registry
from ats_pipelines.training.backends import final_fit_for
from ats_pipelines.training.drift import psi
from ats_pipelines.training.outcomes import degradation, fill_outcomes, live_performance
from ats_pipelines.training.pipeline import TrainedModel, TrainingRun, train_request
from ats_pipelines.training.predict import score, write_signals
from ats_pipelines.training.report import markdown, summary_lines

GROUP = "training"


class TrainingRunConfig(dg.Config):
    """The claimed retrain request this run serves (filled in by the queue sensor)."""

    queue_id: int
    attempt: int = 1
    scope: str = "default"
    n_trials: int | None = None  # default: the models resource's budget
    timeout_s: float | None = None


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def _model_metadata(trained: TrainedModel) -> dict[str, Any]:
    m = trained.result.metrics
    return {
        "model_id": trained.model_id,
        "scope": trained.scope,
        "queue_id": trained.queue_id,
        "champion_at_training": trained.champion_at_training or "none",
        "holdout_log_loss": m["model"]["log_loss"],
        "prior_log_loss": m["prior"]["log_loss"],
        "momentum_log_loss": m["momentum"]["log_loss"],
        "holdout_auc": m["model"]["auc"],
        "signals": m["model"]["trading"]["signals"],
        "hit_rate": m["model"]["trading"]["hit_rate"],
        "mean_realized_rr": m["model"]["trading"]["mean_rr"],
        "trials": trained.result.study.trials,
        "pruned_trials": trained.result.study.pruned,
        "train_rows": trained.result.train_rows,
        "report": dg.MetadataValue.md(markdown(trained.report)),
        "report_html": dg.MetadataValue.path(str(trained.report_paths[1])),
        "artifact": dg.MetadataValue.path(trained.record.artifact_path),
        "gates": dg.MetadataValue.md(
            "\n".join(f"- {line}" for line in summary_lines(trained.report)[3:]) or "-"
        ),
    }


# Lineage of the default scope: labels_1m joined to the signals_v1 features through Feast.
FEATURE_DEPS = ["feast_registry", "features_1m", "labels_1m"]


@dg.asset(group_name=GROUP, kinds={"lightgbm", "optuna"}, deps=FEATURE_DEPS)
def lgbm_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    timescale: TimescaleResource,
    models: ModelsResource,
    training_data: TrainingDataResource,
) -> dg.Output[dict[str, Any]]:
    """A LightGBM challenger for one retrain request: tuned, fitted, evaluated, registered."""
    scope = models.scope(config.scope)
    cfg = models.trainer_config(scope, config.n_trials, config.timeout_s)
    trained = train_request(
        timescale.run,
        TrainingRun(
            queue_id=config.queue_id,
            attempt=config.attempt,
            scope=scope,
            source=training_data.training_source(scope),
            served_features=training_data.served_features(scope),
            cfg=cfg,
            storage=models.storage(),
            models_dir=models.models_path,
            reports_dir=models.reports_path,
            policy=models.promotion_policy(),
            run_id=context.run_id,
            final_fit=final_fit_for(models.backend, models.dask_scheduler, cfg.max_bin),
        ),
    )
    for line in summary_lines(trained.report):
        context.log.info(f"event=model_trained {line}")
    return dg.Output(trained.handle(), metadata=_model_metadata(trained))


@dg.asset(group_name=GROUP, kinds={"lightgbm"})
def champion_model(
    context: dg.AssetExecutionContext, lgbm_model: dict[str, Any], timescale: TimescaleResource
) -> dg.MaterializeResult:
    """The scope's champion: the challenger, once every blocking promotion check passed."""
    model_id = lgbm_model["model_id"]

    async def body(conn: asyncpg.Connection) -> registry.ModelRecord:
        return await registry.promote(
            conn, model_id, expected_champion=lgbm_model["champion_at_training"]
        )

    promoted = timescale.run(body)
    context.log.info(
        f"event=model_promoted model={model_id} scope={promoted.scope} "
        f"replaced={lgbm_model['champion_at_training']}"
    )
    return dg.MaterializeResult(
        metadata={
            "model_id": model_id,
            "scope": promoted.scope,
            "replaced": lgbm_model["champion_at_training"] or "none",
            "promoted_at": str(promoted.promoted_at),
        }
    )


async def _champions(conn: asyncpg.Connection, scopes: list[str]) -> list[registry.ModelRecord]:
    found = [await registry.champion(conn, s) for s in scopes]
    return [c for c in found if c is not None]


@dg.asset(group_name=GROUP, kinds={"lightgbm", "timescaledb"}, deps=["feast_online_store"])
def predictions(
    context: dg.AssetExecutionContext,
    timescale: TimescaleResource,
    models: ModelsResource,
    training_data: TrainingDataResource,
) -> dg.MaterializeResult:
    """Champion predictions on the latest online features, written to signals.signals."""
    champions = timescale.run(lambda c: _champions(c, list(models.scopes)))
    online = training_data.online_source()
    rows: list[dict[str, Any]] = []
    for record in champions:
        scope = models.scope(record.scope)
        loaded = registry.load_model(record)
        latest = online.latest(scope, loaded.features)
        rows += score(
            loaded,
            latest,
            scope,
            momentum_threshold=record.metrics.get("momentum", {}).get("threshold", 0.0),
        )
    inserted = timescale.run(lambda c: write_signals(c, rows))
    latencies = sorted(r["latency_ms"] for r in rows)
    context.log.info(
        f"event=predictions champions={len(champions)} rows={len(rows)} inserted={inserted}"
    )
    preview = [
        {k: r[k] for k in ("ts", "symbol", "model_id", "pred", "proba", "market_regime")}
        for r in rows[:10]
    ]
    return dg.MaterializeResult(
        metadata={
            "champions": len(champions),
            "rows": len(rows),
            "inserted": inserted,
            "latency_ms_max": latencies[-1] if latencies else 0.0,
            "preview": dg.MetadataValue.md(_md_table(preview)),
        }
    )


@dg.asset(group_name=GROUP, deps=[predictions], kinds={"timescaledb"})
def signal_outcomes(
    context: dg.AssetExecutionContext, timescale: TimescaleResource, models: ModelsResource
) -> dg.MaterializeResult:
    """Realised label, outcome and reward-to-risk of signals whose label horizon has passed."""

    async def body(conn: asyncpg.Connection) -> Any:
        pending = await conn.fetch(
            "SELECT DISTINCT s.model_id, m.scope FROM signals.signals s "
            "JOIN ml.models m USING (model_id) WHERE s.outcome IS NULL"
        )
        barriers = {
            r["model_id"]: models.scope(r["scope"]).barriers
            for r in pending
            if r["scope"] in models.scopes
        }
        return await fill_outcomes(conn, barriers, now=datetime.now(UTC))

    filled = timescale.run(body)
    context.log.info(f"event=signal_outcomes evaluated={filled.evaluated} waiting={filled.waiting}")
    return dg.MaterializeResult(
        metadata={
            "evaluated": filled.evaluated,
            "waiting_for_bars": filled.waiting,
            "by_outcome": dg.MetadataValue.json(filled.by_outcome),
        }
    )


@dg.asset(group_name=GROUP, deps=[signal_outcomes], kinds={"timescaledb"})
def live_model_performance(
    context: dg.AssetExecutionContext, timescale: TimescaleResource, models: ModelsResource
) -> dg.MaterializeResult:
    """Win rate and realised R of each champion's recent signals; enqueues a retrain when
    degraded."""
    policy = models.degradation_policy()

    async def body(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        out = []
        for record in await _champions(conn, list(models.scopes)):
            perf = await live_performance(conn, record.model_id, policy.window)
            reasons = degradation(perf, policy)
            queued = None
            if reasons:
                queued = await queue.enqueue(
                    conn,
                    scope=record.scope,
                    priority=2,
                    requested_by="degradation",
                    reason=f"degraded outcomes of {record.model_id}: " + "; ".join(reasons),
                )
            out.append(
                {
                    "scope": record.scope,
                    "model_id": record.model_id,
                    "signals": perf.signals,
                    "win_rate": round(perf.win_rate, 4),
                    "mean_rr": round(perf.mean_rr, 4),
                    "degraded": bool(reasons),
                    "queue_id": queued.id if queued else None,
                }
            )
        return out

    rows = timescale.run(body)
    for r in rows:
        context.log.info("event=live_performance " + " ".join(f"{k}={v}" for k, v in r.items()))
    return dg.MaterializeResult(
        metadata={
            "champions": len(rows),
            "degraded": sum(r["degraded"] for r in rows),
            "performance": dg.MetadataValue.md(_md_table(rows)),
        }
    )


@dg.asset(group_name=GROUP, kinds={"python"})
def feature_drift(
    context: dg.AssetExecutionContext,
    timescale: TimescaleResource,
    models: ModelsResource,
    training_data: TrainingDataResource,
) -> dg.MaterializeResult:
    """PSI of recent features vs each champion's training window; enqueues a retrain above the
    threshold."""
    now = datetime.now(UTC)
    champions = timescale.run(lambda c: _champions(c, list(models.scopes)))
    rows, alarms = [], []
    for record in champions:
        scope = models.scope(record.scope)
        loaded = registry.load_model(record)
        recent = training_data.recent_features(
            scope, loaded.features, now - timedelta(days=models.drift_window_days), now
        )
        report = psi(loaded.drift_reference, recent, models.psi_threshold)
        top = sorted(report.psi.items(), key=lambda kv: -kv[1])[:5]
        rows.append(
            {
                "scope": scope.name,
                "model_id": record.model_id,
                "rows": report.rows,
                "max_psi": round(report.max_psi, 4),
                "drifted": len(report.drifted),
                "top": ", ".join(f"{k}={v:.3f}" for k, v in top),
            }
        )
        if report.alarm and report.rows:
            alarms.append((scope.name, record.model_id, report))

    async def enqueue_all(conn: asyncpg.Connection) -> list[int]:
        ids = []
        for scope_name, model_id, report in alarms:
            reason = (
                f"feature drift vs {model_id}: PSI {report.max_psi:.3f} > "
                f"{report.threshold} on {', '.join(report.drifted[:5])}"
            )
            ids.append(
                (
                    await queue.enqueue(
                        conn, scope=scope_name, reason=reason, priority=2, requested_by="drift"
                    )
                ).id
            )
        return ids

    queued = timescale.run(enqueue_all) if alarms else []
    context.log.info(
        f"event=feature_drift champions={len(champions)} alarms={len(alarms)} queued={queued}"
    )
    return dg.MaterializeResult(
        metadata={
            "champions": len(champions),
            "alarms": len(alarms),
            "threshold": models.psi_threshold,
            "queued": dg.MetadataValue.json(queued),
            "psi": dg.MetadataValue.md(_md_table(rows)),
        }
    )
