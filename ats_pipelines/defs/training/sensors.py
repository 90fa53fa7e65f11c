"""Sensors of the training domain.

* ``retrain_queue_sensor`` — the queue's only consumer: hands crashed claims back
  (:func:`ats_pipelines.training.queue.reclaim`), claims pending requests in priority then age
  order (``FOR UPDATE SKIP LOCKED``) while fewer than ``max_concurrent_runs`` are processing,
  and requests one ``training_job`` run per claim (run key = queue id; ``<id>.<attempt>`` for a
  reclaimed request's later attempts). A request for an unknown scope fails at once.
* ``retrain_run_failure_sensor`` — a training run that failed before its asset could record the
  error (bad config, a lost process) marks its request failed with the run's error.
* ``predictions_new_bars_sensor`` — a new closed bar of a scope's timeframe → a predictions run.
"""

import json
from datetime import timedelta

import asyncpg
import dagster as dg

from ats_pipelines.defs.training.jobs import TRAINING_JOB, predictions_job
from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.training import queue
from ats_pipelines.warehouse.bar_location import bars_from

STOPPED = dg.DefaultSensorStatus.STOPPED
QUEUE_TAG, ATTEMPT_TAG, SCOPE_TAG = "ats/queue_id", "ats/attempt", "ats/scope"


def training_run_config(item: queue.QueueItem) -> dict:
    config = {"queue_id": item.id, "attempt": item.attempts, "scope": item.scope}
    for key in ("n_trials", "timeout_s"):
        if item.config.get(key) is not None:
            config[key] = item.config[key]
    return {"ops": {"lgbm_model": {"config": config}}}


@dg.sensor(
    job_name=TRAINING_JOB,
    minimum_interval_seconds=30,
    default_status=STOPPED,
    description="Claims pending retrain requests (priority, then age; SKIP LOCKED) and "
    "launches one training run per request; reclaims crashed claims.",
)
def retrain_queue_sensor(
    context: dg.SensorEvaluationContext, timescale: TimescaleResource, models: ModelsResource
) -> dg.SensorResult:
    """Pending retrain requests → training runs (run key = queue id)."""

    async def body(conn: asyncpg.Connection) -> tuple[list[queue.Reclaimed], list[queue.QueueItem]]:
        reclaimed = await queue.reclaim(
            conn,
            stale_after=timedelta(seconds=models.stale_after_s),
            max_attempts=models.max_attempts,
        )
        busy = await conn.fetchval(
            "SELECT count(*) FROM ml.retrain_queue WHERE status = 'processing'"
        )
        room = min(models.claims_per_tick, models.max_concurrent_runs - int(busy or 0))
        items = await queue.claim(conn, limit=room, claimed_by=f"sensor:{context.sensor_name}")
        for item in items:
            if item.scope not in models.scopes:
                await queue.fail(
                    conn,
                    item.id,
                    item.attempts,
                    f"unknown model scope {item.scope!r}; configured: "
                    f"{', '.join(sorted(models.scopes))}",
                )
        return reclaimed, [i for i in items if i.scope in models.scopes]

    reclaimed, items = timescale.run(body)
    for r in reclaimed:
        context.log.warning(
            f"event=retrain_reclaimed queue_id={r.id} scope={r.scope} "
            f"action={r.action} detail={r.detail!r}"
        )
    requests = []
    for item in items:
        context.log.info(
            f"event=retrain_claimed queue_id={item.id} scope={item.scope} "
            f"priority={item.priority} attempt={item.attempts} "
            f"run_key={item.run_key}"
        )
        requests.append(
            dg.RunRequest(
                run_key=item.run_key,
                run_config=training_run_config(item),
                tags={
                    QUEUE_TAG: str(item.id),
                    ATTEMPT_TAG: str(item.attempts),
                    SCOPE_TAG: item.scope,
                },
            )
        )
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SensorResult(skip_reason="no pending retrain request (or the run limit is reached)")


def failure_message(context: dg.RunFailureSensorContext) -> str:
    parts = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:  # the user code's own error
            error = error.cause
        if error is not None:
            parts.append(f"{event.step_key}: {error.message.strip()}")
    return " | ".join(parts)


@dg.run_failure_sensor(
    default_status=STOPPED,
    description="Marks the retrain request of a failed training run failed, with the run's error.",
)
def retrain_run_failure_sensor(
    context: dg.RunFailureSensorContext, timescale: TimescaleResource
) -> None:
    """A failed training run → its retrain request failed (unless already finished)."""
    tags = context.dagster_run.tags
    if QUEUE_TAG not in tags:
        return
    queue_id, attempt = int(tags[QUEUE_TAG]), int(tags.get(ATTEMPT_TAG, "1"))
    message = failure_message(context)

    async def body(conn: asyncpg.Connection) -> bool:
        try:
            await queue.fail(conn, queue_id, attempt, message, run_id=context.dagster_run.run_id)
            return True
        except queue.StaleClaim:
            return False  # the run recorded its own outcome (or a later attempt owns the row)

    if timescale.run(body):
        context.log.info(
            f"event=retrain_failed queue_id={queue_id} attempt={attempt} "
            f"run_id={context.dagster_run.run_id}"
        )


@dg.sensor(
    job=predictions_job,
    minimum_interval_seconds=60,
    default_status=STOPPED,
    description="A new closed bar of a scope's timeframe → one predictions run.",
)
def predictions_new_bars_sensor(
    context: dg.SensorEvaluationContext, timescale: TimescaleResource, models: ModelsResource
) -> dg.SensorResult:
    """New bars → predictions (cursor: the newest bar seen per scope)."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}

    async def body(conn: asyncpg.Connection) -> dict[str, str]:
        newest = {}
        for name in models.scopes:
            scope = models.scope(name)
            bars = await bars_from(conn, scope.timeframe)
            ts = await conn.fetchval(
                f"SELECT max(ts) FROM {bars} WHERE exchange = $1 "  # noqa: S608 - validated
                "AND symbol = ANY($2::text[])",
                scope.exchange,
                list(scope.symbols),
            )
            if ts is not None:
                newest[name] = ts.isoformat()
        return newest

    newest = timescale.run(body)
    fresh = {k: v for k, v in newest.items() if seen.get(k) is None or v > seen[k]}
    cursor = json.dumps({**seen, **newest}, sort_keys=True)
    if not fresh:
        return dg.SensorResult(skip_reason="no new bar", cursor=cursor)
    key = "|".join(f"{k}@{v}" for k, v in sorted(fresh.items()))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"predictions:{key}")], cursor=cursor
    )
