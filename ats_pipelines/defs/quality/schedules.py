"""Schedules of the quality domain (all start stopped; an operator turns them on)."""

import dagster as dg

from ats_pipelines.orchestration.jobs import JobLike

STOPPED = dg.DefaultScheduleStatus.STOPPED


def build_schedules(jobs: dict[str, JobLike]) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="quality_report_schedule",
            cron_schedule="30 2 * * *",
            job=jobs["quality_report_job"],
            default_status=STOPPED,
            execution_timezone="UTC",
            description="Every night: the quality report of the last day.",
        ),
        dg.ScheduleDefinition(
            name="stream_quality_schedule",
            cron_schedule="*/5 * * * *",
            job=jobs["stream_quality_job"],
            default_status=STOPPED,
            execution_timezone="UTC",
            description="Every 5 minutes: stream freshness and stream vs REST.",
        ),
        dg.ScheduleDefinition(
            name="quality_reconciliation_schedule",
            cron_schedule="0 2 * * *",
            job=jobs["quality_reconciliation_job"],
            default_status=STOPPED,
            execution_timezone="UTC",
            description="Every night: history vs REST, CEX vs DEX.",
        ),
    ]
