"""Jobs of the signals domain: one analyzer run, one coordinator run, one replay."""

import dagster as dg

from ats_pipelines.defs.signals.assets import COORDINATED, DETECTED, REPLAYED
from ats_pipelines.orchestration.jobs import JobLike

TREND_ANALYSIS = "trend_analysis_job"
COORDINATION = "signal_coordination_job"
REPLAY = "signal_replay_job"


def build_signal_jobs() -> list[JobLike]:
    return [
        dg.define_asset_job(
            TREND_ANALYSIS,
            selection=dg.AssetSelection.assets(DETECTED),
            description="Analyse new closed bars (one series per sensor run; every configured "
            "series when launched by hand).",
        ),
        dg.define_asset_job(
            COORDINATION,
            selection=dg.AssetSelection.assets(COORDINATED),
            description="Coordinate the signals decided since the coordinator watermark.",
        ),
        dg.define_asset_job(
            REPLAY,
            selection=dg.AssetSelection.assets(REPLAYED),
            description="Replay analyzers and coordinator over a historical range and compare "
            "with the live output.",
        ),
    ]
