"""The features domain's definitions, built from the settings when the code location loads."""

from pathlib import Path

import dagster as dg

from ats_pipelines.config import load_settings
from ats_pipelines.defs.features.assets import GROUP, ONLINE, REGISTRY, build_assets
from ats_pipelines.warehouse.config import MarketDataSettings, load_market_data_settings


def build_features_defs(settings: MarketDataSettings, lake_root: Path) -> dg.Definitions:
    assets = build_assets(settings, lake_root)
    partitioned = dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(REGISTRY, ONLINE)
    job = dg.define_asset_job(
        "features_job",
        selection=partitioned,
        description="Lake export, features and labels of the partitions "
        "asked for (Feast follows by automation).",
    )
    return dg.Definitions(assets=assets, jobs=[job])


@dg.definitions
def features() -> dg.Definitions:
    return build_features_defs(load_market_data_settings(), load_settings().lake_dir)
