"""Schedules of the market-data domain (all start stopped; an operator turns them on)."""

from datetime import date, timedelta
from typing import Any

import dagster as dg

from ats_pipelines.orchestration.jobs import JobLike
from ats_pipelines.warehouse.config import MarketDataSettings

REPAIR_LOOKBACK_DAYS = 7
STOPPED = dg.DefaultScheduleStatus.STOPPED


def build_schedules(settings: MarketDataSettings, jobs: dict[str, JobLike]) -> list[Any]:
    daily_candles = dg.build_schedule_from_partitioned_job(
        jobs["candles_1m_job"],
        hour_of_day=0,
        minute_of_hour=10,
        default_status=STOPPED,
        name="candles_1m_daily_schedule",
    )
    daily_history = dg.build_schedule_from_partitioned_job(
        jobs["market_history_job"],
        hour_of_day=0,
        minute_of_hour=20,
        default_status=STOPPED,
        name="market_history_daily_schedule",
    )

    @dg.schedule(
        cron_schedule="30 1 * * *",
        job=jobs["candles_1m_repair_job"],
        default_status=STOPPED,
        execution_timezone="UTC",
    )
    def candles_1m_repair_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        """Every night, one repair run per symbol over the last week's candle partitions."""
        today = context.scheduled_execution_time.date()
        last = today - timedelta(days=1)
        first = max(
            last - timedelta(days=REPAIR_LOOKBACK_DAYS - 1), date.fromisoformat(settings.start_date)
        )
        if last < first:
            return []
        requests = []
        for symbol in settings.symbols:
            start = dg.MultiPartitionKey({"date": first.isoformat(), "symbol": symbol})
            end = dg.MultiPartitionKey({"date": last.isoformat(), "symbol": symbol})
            requests.append(
                dg.RunRequest(
                    run_key=f"repair:{symbol}:{first}:{last}",
                    tags={
                        "dagster/asset_partition_range_start": start,
                        "dagster/asset_partition_range_end": end,
                    },
                )
            )
        return requests

    @dg.schedule(
        cron_schedule="0 3 * * *",
        job=jobs["market_data_retention_job"],
        default_status=STOPPED,
        execution_timezone="UTC",
    )
    def market_data_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Every night, apply retention (and compression) to the market tables."""
        return dg.RunRequest(run_key=f"retention:{context.scheduled_execution_time.date()}")

    return [
        daily_candles,
        daily_history,
        candles_1m_repair_schedule,
        market_data_retention_schedule,
    ]
