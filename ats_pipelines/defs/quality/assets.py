"""The quality report: every suite, reconciliation and freshness check on the latest data,
rendered as Great Expectations Data Docs plus a one-page summary under .ats/reports/quality/."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.check_results import frame_markdown
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.features import LakeResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.quality.build import ReportData, gather_report, write_report
from ats_pipelines.warehouse.config import MarketDataSettings

GROUP = "quality"


class QualityReportConfig(dg.Config):
    """The window the report covers (default: the latest days of 1m candles up to now)."""

    days: int | None = None  # default: the quality resource's report_window_days
    end: str | None = None  # ISO-8601 end of the window (UTC); default: after the newest bar
    data_docs: bool = True


def _window(config: QualityReportConfig, days: int) -> tuple[datetime, datetime] | None:
    if config.end is None:
        return None
    end = datetime.fromisoformat(config.end)
    if end.tzinfo is None:
        raise dg.Failure(f"quality_report: end={config.end!r} has no time zone; use UTC (Z)")
    return end - timedelta(days=days), end


def build_quality_report(settings: MarketDataSettings) -> dg.AssetsDefinition:
    @dg.asset(name="quality_report", group_name=GROUP, kinds={"python", "html"})
    def quality_report(
        context: dg.AssetExecutionContext,
        config: QualityReportConfig,
        timescale: TimescaleResource,
        exchange: ExchangeResource,
        lake: LakeResource,
        quality: QualityResource,
    ) -> dg.MaterializeResult:
        """Runs every quality check on the latest data; writes Data Docs and a summary page."""
        now = datetime.now(UTC)
        days = config.days or quality.report_window_days
        window = _window(config, days)

        async def body(conn: asyncpg.Connection) -> ReportData:
            async with exchange.open() as client:
                return await gather_report(
                    conn,
                    now=now,
                    policy=quality.policy(),
                    run_id=context.run_id,
                    days=days,
                    window=window,
                    clients={settings.exchange: client},
                    lake=lake.lake(),
                    trend_runs=quality.trend_runs,
                )

        report = write_report(timescale.run(body), quality.report_dir, data_docs=config.data_docs)
        checks = report.checks
        context.log.info(
            f"event=quality_report path={report.index} checks={len(report.rows)} "
            f"failing={len(report.failing)} window={checks.window[0].isoformat()}"
            f"/{checks.window[1].isoformat()}"
        )
        meta: dict[str, Any] = {
            "report": dg.MetadataValue.path(str(report.index)),
            "report_url": dg.MetadataValue.url(report.index.resolve().as_uri()),
            "checks": len(report.rows),
            "failing": len(report.failing),
            "failing_checks": dg.MetadataValue.json(
                [f"{r.asset}:{r.check}" for r in report.failing]
            ),
            "window": f"{checks.window[0].isoformat()} / {checks.window[1].isoformat()}",
            "summary": dg.MetadataValue.md(report.markdown),
            "scores": dg.MetadataValue.md(
                frame_markdown(
                    checks.scores.drop("details", strict=False) if checks.scores.height else None
                )
            ),
        }
        if report.data_docs is not None:
            meta["data_docs"] = dg.MetadataValue.path(str(report.data_docs))
        return dg.MaterializeResult(metadata=meta)

    return quality_report
