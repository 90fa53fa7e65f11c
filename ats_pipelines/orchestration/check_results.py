"""Turning quality outcomes into Dagster check results (metadata a person reads) and recording
each evaluation in ``ops.quality_check_runs`` for the report's trend."""

from datetime import datetime
from typing import Any

import asyncpg
import dagster as dg
import polars as pl

from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.quality.catalog import ERROR, CheckSpec
from ats_pipelines.quality.history import CheckRun, record_check_run
from ats_pipelines.quality.reconcile import Reconciliation
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.warehouse.reports import markdown_table

SAMPLE_ROWS = 20


def severity(spec: CheckSpec) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if spec.severity == ERROR else dg.AssetCheckSeverity.WARN


def frame_markdown(frame: pl.DataFrame | None, limit: int = SAMPLE_ROWS) -> str:
    if frame is None or frame.is_empty():
        return "none"
    shown = frame.head(limit)
    rows = [tuple("" if v is None else str(v) for v in r) for r in shown.rows()]
    more = f"\n\n… {frame.height - limit} more" if frame.height > limit else ""
    return markdown_table(tuple(shown.columns), rows) + more


def _links(quality: QualityResource) -> dict[str, Any]:
    return {
        "report": dg.MetadataValue.path(str(quality.index_path)),
        "report_url": dg.MetadataValue.url(quality.index_path.resolve().as_uri()),
    }


def suite_metadata(outcome: SuiteOutcome, quality: QualityResource) -> dict[str, Any]:
    failures = (
        markdown_table(
            ("rule", "expectation", "columns", "rows", "observed"),
            [
                (
                    f.rule,
                    f.expectation,
                    ", ".join(f.columns),
                    f.unexpected_count or "",
                    f.error or f.observed or "",
                )
                for f in outcome.failures
            ],
        )
        if outcome.failures
        else "none"
    )
    samples = [dict(s, rule=f.rule) for f in outcome.failures for s in f.sample]
    meta: dict[str, Any] = {
        "suite": outcome.name,
        "rows_checked": outcome.rows,
        "expectations": outcome.evaluated,
        "failed_rules": dg.MetadataValue.json(outcome.failed_rules),
        "failed_expectations": dg.MetadataValue.md(failures),
        "offending_rows": dg.MetadataValue.md(
            frame_markdown(pl.DataFrame(samples, infer_schema_length=None) if samples else None)
        ),
        **_links(quality),
    }
    if outcome.coverage is not None:
        meta["coverage"] = dg.MetadataValue.float(round(outcome.coverage, 6))
        meta["gaps"] = dg.MetadataValue.md(frame_markdown(outcome.gaps))
        meta["series"] = dg.MetadataValue.md(
            frame_markdown(outcome.series.drop("_row") if outcome.series is not None else None)
        )
    return meta


def reconciliation_metadata(result: Reconciliation, quality: QualityResource) -> dict[str, Any]:
    return {
        "compared": result.compared,
        "agreed": result.agreed,
        "disagreements": dg.MetadataValue.md(frame_markdown(result.disagreements)),
        f"only_in_{result.left}": dg.MetadataValue.md(frame_markdown(result.only_left)),
        f"only_in_{result.right}": dg.MetadataValue.md(frame_markdown(result.only_right)),
        **_links(quality),
    }


async def record(
    conn: asyncpg.Connection,
    context: dg.AssetCheckExecutionContext,
    spec: CheckSpec,
    *,
    passed: bool,
    partition: str,
    rows: int,
    window: tuple[datetime, datetime] | None,
    coverage: float | None = None,
    failed: list[dict[str, Any]] | None = None,
) -> None:
    await record_check_run(
        conn,
        CheckRun(
            run_id=context.run.run_id,
            asset=spec.asset,
            check_name=spec.name,
            passed=passed,
            severity=spec.severity,
            blocking=spec.blocking,
            partition=partition,
            rows_checked=rows,
            coverage=coverage,
            failed=failed or [],
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
        ),
    )


def outcome_failures(outcome: SuiteOutcome) -> list[dict[str, Any]]:
    return [
        {
            "rule": f.rule,
            "expectation": f.expectation,
            "columns": list(f.columns),
            "rows": f.unexpected_count,
            "observed": f.observed,
        }
        for f in outcome.failures
    ]


def suite_result(
    spec: CheckSpec, outcome: SuiteOutcome, quality: QualityResource
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=severity(spec),
        description=None
        if outcome.success
        else outcome.summary() + "; first: " + outcome.failures[0].line(),
        metadata=suite_metadata(outcome, quality),
    )
