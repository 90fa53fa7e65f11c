"""Resources for every domain, chosen once by ATS_ENV (local, test, prod)."""


from typing import Any

import dagster as dg

from ats_pipelines.config import Settings, load_settings
from ats_pipelines.resources.timescale import TimescaleResource


def _local(settings: Settings) -> dict[str, Any]:
    return {"timescale": TimescaleResource(database_url=settings.database_url)}


def _prod(settings: Settings) -> dict[str, Any]:
    return {"timescale": TimescaleResource(database_url=dg.EnvVar("ATS_DATABASE_URL"))}


RESOURCES_BY_ENV = {"local": _local, "test": _local, "prod": _prod}


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or load_settings()
    return RESOURCES_BY_ENV[settings.ats_env](settings)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
