"""Resources for every domain, chosen once by ATS_ENV (local, test, prod)."""

import os
from typing import Any

import dagster as dg

from ats_pipelines.config import DEFAULT_DB_USER, REDIS_SECRET, Settings, load_settings
from ats_pipelines.deploy.local import exchange_origin
from ats_pipelines.local_secrets import secret_path, without_password
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.features import PROD_YAML, FeastResource, LakeResource
from ats_pipelines.orchestration.resources.legacy_cache import LegacyCacheResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.stream import StreamResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import training_resources
from ats_pipelines.universe import load_universe


def _exchange(settings: Settings) -> ExchangeResource:
    # local/test default to the emulator (no machine here reaches an exchange), prod to the
    # exchange's own hosts; ATS_EXCHANGE_URL overrides either.
    market = load_universe({**os.environ, "ATS_ENV": settings.ats_env})
    # credentials, where set, are resolved when a run starts (never stored in the definitions);
    # with them a restarted stream refills a trade gap of any length (historicalTrades)
    keyed = bool(os.environ.get("ATS_EXCHANGE_API_KEY"))
    return ExchangeResource(
        exchange_id=market.exchange,
        rest_url=market.exchange_url,
        origin=exchange_origin(settings.ats_env, os.environ),
        api_key=dg.EnvVar("ATS_EXCHANGE_API_KEY") if keyed else None,
        secret=dg.EnvVar("ATS_EXCHANGE_SECRET") if keyed else None,
    )


def _legacy_cache(settings: Settings) -> LegacyCacheResource:
    return LegacyCacheResource(config_file=str(settings.state_dir / "migration.toml"))


def _quality(settings: Settings) -> QualityResource:
    return QualityResource(reports_dir=str(settings.reports_dir / "quality"))


def _features(settings: Settings, prod: bool) -> dict[str, Any]:
    lake = str(settings.lake_dir)
    if prod:  # registry URL and Redis address may hold credentials: read when a run starts
        feast = FeastResource(
            repo_path=str(settings.feast_repo),
            lake_root=lake,
            registry=dg.EnvVar("ATS_FEAST_REGISTRY"),
            online_store=dg.EnvVar("ATS_FEAST_ONLINE_STORE"),
            yaml_file=PROD_YAML,
        )
    else:
        feast = FeastResource(
            repo_path=str(settings.feast_repo),
            lake_root=lake,
            registry=settings.feast_registry,
            online_store=settings.feast_online_store,
        )
    return {"lake": LakeResource(root=lake), "feast": feast}


def _training(settings: Settings, prod: bool) -> dict[str, Any]:
    """Features (lake, feast) plus training (models, training_data), which reads Feast."""
    features = _features(settings, prod)
    return {**features, **training_resources(settings, features["feast"], prod)}


def _timescale(settings: Settings) -> TimescaleResource:
    """No password in the definitions (the UI shows resource config): an external URL is read
    from its variable when a run starts, the managed cluster's password from its 0600 file."""
    if not settings.managed_database:
        return TimescaleResource(database_url=dg.EnvVar(settings.database_url_variable))
    return TimescaleResource(
        database_url=without_password(settings.database_url),
        password_file=str(secret_path(settings.state_dir, DEFAULT_DB_USER)),
    )


def _stream(settings: Settings) -> StreamResource:
    state_dir = str(settings.state_dir)
    if not settings.managed_redis:
        return StreamResource(redis_url=dg.EnvVar("ATS_REDIS_URL"), state_dir=state_dir)
    return StreamResource(
        redis_url=without_password(settings.redis_url),
        password_file=str(secret_path(settings.state_dir, REDIS_SECRET)),
        state_dir=state_dir,
    )


def _local(settings: Settings) -> dict[str, Any]:
    return {
        "timescale": _timescale(settings),
        "exchange": _exchange(settings),
        "stream": _stream(settings),
        "quality": _quality(settings),
        "legacy_cache": _legacy_cache(settings),
        **_training(settings, prod=False),
    }


def _prod(settings: Settings) -> dict[str, Any]:
    return {
        "timescale": TimescaleResource(database_url=dg.EnvVar(settings.database_url_variable)),
        "exchange": _exchange(settings),
        "stream": StreamResource(
            redis_url=dg.EnvVar("ATS_REDIS_URL"), state_dir=str(settings.state_dir)
        ),
        "quality": _quality(settings),
        "legacy_cache": _legacy_cache(settings),
        **_training(settings, prod=True),
    }


RESOURCES_BY_ENV = {"local": _local, "test": _local, "prod": _prod}


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or load_settings()
    return RESOURCES_BY_ENV[settings.ats_env](settings)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
