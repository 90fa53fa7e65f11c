"""Jobs of the quality domain: the report, stream quality checks, and reconciliation."""

import dagster as dg

from ats_pipelines.orchestration.jobs import JobLike
from ats_pipelines.quality import catalog

REPORT = dg.AssetKey("quality_report")


def _checks(
    checks: list[dg.AssetChecksDefinition], specs: list[catalog.CheckSpec]
) -> list[dg.AssetChecksDefinition]:
    wanted = {(s.asset, s.name) for s in specs}
    return [
        c
        for c in checks
        if any((k.asset_key.to_user_string(), k.name) in wanted for k in c.check_keys)
    ]


def build_jobs(checks: list[dg.AssetChecksDefinition]) -> list[JobLike]:
    return [
        dg.define_asset_job(
            "quality_report_job",
            selection=dg.AssetSelection.assets(REPORT),
            description="Run every quality check on the latest data and "
            "write the report (.ats/reports/quality/).",
        ),
        dg.define_asset_job(
            "stream_quality_job",
            selection=dg.AssetSelection.checks(
                *_checks(checks, [catalog.FRESHNESS, catalog.STREAM_REST])
            ),
            description="Freshness of the streamed bars and their agreement with REST.",
        ),
        dg.define_asset_job(
            "quality_reconciliation_job",
            selection=dg.AssetSelection.checks(
                *_checks(checks, [catalog.HISTORY_REST, catalog.CEX_DEX])
            ),
            description="Migrated history vs REST, and CEX vs DEX prices.",
        ),
    ]
