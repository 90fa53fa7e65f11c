"""Stream heartbeats -> the freshness check's status in the UI, evaluated every 30 s.

The cursor holds the last verdict; an evaluation is recorded when it changes (and at least
every ``REASSERT_S`` so the UI's latest result is never old), so the event log is not flooded
with identical results.
"""

import json
import time

import dagster as dg

from ats_pipelines.db.connect import DatabaseUnavailable
from ats_pipelines.defs.streaming.checks import (
    FRESHNESS_CHECK,
    freshness_metadata,
    stream_bars,
)
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.streaming.health import freshness, read_heartbeats

REASSERT_S = 600


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns ops.stream_heartbeats into the stream_fresh check's status.",
)
def stream_freshness_sensor(
    context: dg.SensorEvaluationContext, timescale: TimescaleResource
) -> dg.SensorResult | dg.SkipReason:
    """Records a stream_fresh evaluation whenever the streaming shards' freshness changes."""
    try:
        verdict = freshness(timescale.run(read_heartbeats))
    except DatabaseUnavailable as exc:
        return dg.SkipReason(f"database unavailable: {exc}")
    previous = json.loads(context.cursor) if context.cursor else {}
    state = {
        "passed": verdict.passed,
        "shards": sorted(s.shard for s in verdict.shards),
        "stale": sorted(s.shard for s in verdict.shards if not s.fresh),
    }
    now = time.time()
    if previous.get("state") == state and now - previous.get("at", 0) < REASSERT_S:
        return dg.SensorResult(cursor=json.dumps(previous), skip_reason=verdict.summary)
    evaluation = dg.AssetCheckEvaluation(
        asset_key=stream_bars.key,
        check_name=FRESHNESS_CHECK,
        passed=verdict.passed,
        metadata=freshness_metadata(verdict),
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.summary,
    )
    context.log.info(f"event=stream_freshness passed={verdict.passed} {verdict.summary}")
    return dg.SensorResult(
        asset_events=[evaluation], cursor=json.dumps({"state": state, "at": now})
    )
