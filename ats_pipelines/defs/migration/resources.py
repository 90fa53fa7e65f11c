"""The legacy cache resource; its settings file lives in the state folder (.ats/)."""

import dagster as dg

from ats_pipelines.config import load_settings
from ats_pipelines.migration.resource import LegacyCacheResource


@dg.definitions
def resources() -> dg.Definitions:
    settings = load_settings()
    return dg.Definitions(
        resources={
            "legacy_cache": LegacyCacheResource(
                config_file=str(settings.state_dir / "migration.toml"),
                reports_dir=str(settings.reports_dir),
            ),
        }
    )
