"""The market-data domain's definitions, built from the settings when the code location loads.

Symbols, exchange and the first partition day come from the environment
(``ats_pipelines.warehouse.config``); reading them here rather than at import keeps tests
free to build the same definitions from their own settings.
"""

import dagster as dg

from ats_pipelines.defs.market_data.assets import build_assets
from ats_pipelines.defs.market_data.checks import build_gap_check
from ats_pipelines.defs.market_data.jobs import build_jobs
from ats_pipelines.defs.market_data.schedules import build_schedules
from ats_pipelines.warehouse.config import MarketDataSettings, load_market_data_settings


def build_market_data_defs(settings: MarketDataSettings) -> dg.Definitions:
    jobs = build_jobs(settings)
    return dg.Definitions(
        assets=build_assets(settings),
        asset_checks=[build_gap_check(settings)],
        jobs=jobs,
        schedules=build_schedules(settings, {j.name: j for j in jobs}),
    )


@dg.definitions
def market_data() -> dg.Definitions:
    return build_market_data_defs(load_market_data_settings())
