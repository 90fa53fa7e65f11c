"""The Dagster code location loads, with the assets, resources and jobs the platform promises."""

from __future__ import annotations

import dagster as dg
import pytest

from ats_pipelines.config import load_settings
from ats_pipelines.defs.resources import RESOURCES_BY_ENV, build_resources
from ats_pipelines.orchestration.resources.timescale import TimescaleResource


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    from ats_pipelines.definitions import defs

    return defs()


def test_definitions_load_with_key_assets(definitions: dg.Definitions) -> None:
    keys = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    assert "database_schema" in keys
    assert definitions.resources is not None and "timescale" in definitions.resources
    definitions.resolve_all_job_defs()  # every job resolves against its resources


@pytest.mark.parametrize("env", sorted(RESOURCES_BY_ENV))
def test_every_environment_builds_a_timescale_resource(env: str) -> None:
    settings = load_settings({"ATS_ENV": env, "ATS_DATABASE_URL": "postgresql://u@db:5432/ats"})
    resources = build_resources(settings)
    assert isinstance(resources["timescale"], TimescaleResource)


def test_prod_reads_the_url_from_the_environment_at_run_time() -> None:
    settings = load_settings({"ATS_ENV": "prod", "ATS_DATABASE_URL": "postgresql://u@db/ats"})
    resource = build_resources(settings)["timescale"]
    # an EnvVar, not the value: the secret is resolved when the run starts, never stored
    assert isinstance(resource.database_url, dg.EnvVar) or "ATS_DATABASE_URL" in repr(
        resource.database_url
    )
