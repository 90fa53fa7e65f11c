"""The signals domain's definitions, built from the settings when the code location loads
(timeframes, symbols and rule parameters come from the environment; tests build their own)."""

import dagster as dg

from ats_pipelines.defs.signals.assets import build_signal_assets
from ats_pipelines.defs.signals.jobs import build_signal_jobs
from ats_pipelines.defs.signals.sensors import build_signal_sensors
from ats_pipelines.defs.signals.service import build_freshness, build_service_job
from ats_pipelines.signals.config import SignalsSettings, load_signals_settings


def build_signals_defs(settings: SignalsSettings) -> dg.Definitions:
    jobs = build_signal_jobs()
    check, freshness_sensor = build_freshness(settings)
    return dg.Definitions(
        assets=build_signal_assets(settings),
        asset_checks=[check],
        jobs=[*jobs, build_service_job(settings)],
        sensors=[*build_signal_sensors(settings, {j.name: j for j in jobs}), freshness_sensor],
    )


@dg.definitions
def signals() -> dg.Definitions:
    return build_signals_defs(load_signals_settings())
