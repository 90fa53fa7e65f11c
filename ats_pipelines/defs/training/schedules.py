"""Schedules of the training domain: a weekly retrain request per scope, daily drift, hourly
outcomes. Like every schedule here they start stopped; turn them on in the UI."""

from collections.abc import Iterator

import dagster as dg

from ats_pipelines.defs.training.jobs import (
    feature_drift_job,
    retrain_request_job,
    signal_outcomes_job,
)
from ats_pipelines.orchestration.resources.models import ModelsResource


@dg.schedule(
    job=retrain_request_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    description="Every Monday 03:00 UTC: a retrain request (priority 4) per scope.",
)
def weekly_retrain_schedule(
    context: dg.ScheduleEvaluationContext, models: ModelsResource
) -> Iterator[dg.RunRequest]:
    """Weekly retrain requests, one per configured model scope."""
    week = context.scheduled_execution_time.strftime("%G-W%V")
    for scope in sorted(models.scopes):
        yield dg.RunRequest(
            run_key=f"weekly:{scope}:{week}",
            run_config={
                "ops": {
                    "enqueue_retrain": {
                        "config": {
                            "scope": scope,
                            "reason": f"weekly schedule {week}",
                            "priority": 4,
                            "requested_by": "schedule",
                        }
                    }
                }
            },
            tags={"ats/scope": scope},
        )


feature_drift_schedule = dg.ScheduleDefinition(
    name="feature_drift_schedule",
    job=feature_drift_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    description="Daily PSI of recent features (enqueues on drift).",
)

signal_outcomes_schedule = dg.ScheduleDefinition(
    name="signal_outcomes_schedule",
    job=signal_outcomes_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    description="Hourly: outcomes of signals whose horizon passed, then the degradation check.",
)
