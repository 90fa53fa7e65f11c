"""Data-quality checks of market data: missing minutes per candle partition."""

from datetime import date

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.partitions import (
    day_symbol_pairs,
    market_partitions,
    run_partition_keys,
)
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse import reports
from ats_pipelines.warehouse.backfill import gap_reports, partition_days
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.coverage import CONFIRM_AFTER, GapReport


def build_gap_check(settings: MarketDataSettings) -> dg.AssetChecksDefinition:
    partitions = market_partitions(settings)

    @dg.asset_check(
        asset="candles_1m",
        name="no_missing_minutes",
        partitions_def=partitions,
        description="Every closed minute of the partition has a candle or was confirmed empty "
        f"by the exchange ({CONFIRM_AFTER} empty answers); lists the missing runs.",
    )
    def no_missing_minutes(
        context: dg.AssetCheckExecutionContext, timescale: TimescaleResource
    ) -> dg.AssetCheckResult:
        """Lists the minutes of a candle partition that are neither stored nor confirmed empty."""
        keys = run_partition_keys(context, partitions)
        days = partition_days(day_symbol_pairs(partitions, keys))

        async def body(conn: asyncpg.Connection) -> dict[tuple[str, date], GapReport]:
            out: dict[tuple[str, date], GapReport] = {}
            for symbol, symbol_days in days.items():
                for day, report in (
                    await gap_reports(conn, settings.exchange, symbol, symbol_days)
                ).items():
                    out[(symbol, day)] = report
            return out

        found = timescale.run(body)
        ordered = sorted(found.items())
        summary = reports.gap_summary([r for _, r in ordered])
        missing = summary["missing_minutes"]
        context.log.info(
            f"event=gap_check exchange={settings.exchange} partitions={len(keys)} "
            f"missing_minutes={missing}"
        )
        return dg.AssetCheckResult(
            passed=missing == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None
            if missing == 0
            else f"{missing} minute(s) missing; run candles_1m_repair_job on these partitions",
            metadata={
                "missing_minutes": missing,
                "gap_runs": summary["gap_runs"],
                "confirmed_empty_minutes": summary["confirmed_empty_minutes"],
                "missing_by_reason": dg.MetadataValue.json(summary["missing_by_reason"]),
                "partitions": len(keys),
                "gaps": dg.MetadataValue.md(reports.gaps_markdown(ordered)),
                "coverage": dg.MetadataValue.md(reports.coverage_markdown(ordered)),
            },
        )

    return no_missing_minutes
