"""The quality domain's definitions, built from the market-data settings when the code location
loads (the candle checks share the market-data partitions)."""

import dagster as dg

from ats_pipelines.defs.quality.assets import build_quality_report
from ats_pipelines.defs.quality.checks import build_market_checks
from ats_pipelines.defs.quality.jobs import build_jobs
from ats_pipelines.defs.quality.ml_checks import build_ml_checks
from ats_pipelines.defs.quality.reconciliation import build_reconciliation_checks
from ats_pipelines.defs.quality.schedules import build_schedules
from ats_pipelines.warehouse.config import MarketDataSettings, load_market_data_settings


def build_quality_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    return [
        *build_market_checks(settings),
        *build_reconciliation_checks(settings),
        *build_ml_checks(settings),
    ]


def build_quality_defs(settings: MarketDataSettings) -> dg.Definitions:
    checks = build_quality_checks(settings)
    jobs = build_jobs(checks)
    return dg.Definitions(
        assets=[build_quality_report(settings)],
        asset_checks=checks,
        jobs=jobs,
        schedules=build_schedules({j.name: j for j in jobs}),
    )


@dg.definitions
def quality() -> dg.Definitions:
    return build_quality_defs(load_market_data_settings())
