"""The environment is read in one place; the external database comes from either URL variable."""

from __future__ import annotations

import dagster as dg
import pytest

from ats_pipelines.config import ConfigError, load_settings
from ats_pipelines.defs.resources import build_resources

OURS = "postgresql://ats:pw@ours.example:5432/ats"
PLATFORM = "postgres://u:pw@railway.internal:5432/railway"


def test_database_url_is_honoured_when_ats_database_url_is_unset() -> None:
    settings = load_settings({"DATABASE_URL": PLATFORM})
    assert not settings.managed_database
    assert settings.database_url == PLATFORM
    assert settings.database_url_variable == "DATABASE_URL"


def test_ats_database_url_wins_over_database_url() -> None:
    settings = load_settings({"DATABASE_URL": PLATFORM, "ATS_DATABASE_URL": OURS})
    assert settings.database_url == OURS
    assert settings.database_url_variable == "ATS_DATABASE_URL"


def test_neither_variable_means_the_managed_cluster() -> None:
    settings = load_settings({"DATABASE_URL": "", "ATS_DB_PORT": "55999"})
    assert settings.managed_database
    assert settings.database_url.endswith(":55999/ats")


@pytest.mark.parametrize("name", ["DATABASE_URL", "ATS_DATABASE_URL"])
def test_a_malformed_url_names_its_variable_and_hides_the_value(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({name: "mysql://u:s3cret@h/d"})
    assert name in str(err.value) and "s3cret" not in str(err.value)


def test_prod_resolves_the_variable_the_url_came_from_at_run_time() -> None:
    settings = load_settings({"ATS_ENV": "prod", "DATABASE_URL": PLATFORM})
    url = build_resources(settings)["timescale"].database_url
    assert isinstance(url, dg.EnvVar) and url.env_var_name == "DATABASE_URL"


def test_exchange_credentials_reach_the_resources_as_run_time_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATS_EXCHANGE_API_KEY", "k")
    monkeypatch.setenv("ATS_EXCHANGE_SECRET", "s")
    exchange = build_resources(load_settings({"ATS_ENV": "local"}))["exchange"]
    assert isinstance(exchange.api_key, dg.EnvVar) and exchange.api_key.env_var_name == (
        "ATS_EXCHANGE_API_KEY"
    )
    monkeypatch.delenv("ATS_EXCHANGE_API_KEY")
    assert build_resources(load_settings({"ATS_ENV": "local"}))["exchange"].api_key is None
