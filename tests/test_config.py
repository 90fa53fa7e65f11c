"""The environment is read in one place; the external database comes from either URL variable."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ats_pipelines.config import ConfigError, Settings, load_settings
from ats_pipelines.defs.resources import build_resources
from ats_pipelines.local_secrets import ensure_secret, with_password, without_password

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


def _config_text(resource: object) -> str:
    dump = getattr(resource, "model_dump", None)
    return repr(dump() if dump else resource)


def test_local_resources_hold_no_password_but_connect_with_it(
    tmp_path: Path, settings: Settings
) -> None:
    """The Dagster UI shows every resource's config: the managed cluster's and Redis's generated
    passwords are read from their 0600 files when used, never stored in the definitions."""
    state = tmp_path / "state"
    db_pw, redis_pw = ensure_secret(state, "ats"), ensure_secret(state, "redis")
    local = load_settings({"ATS_ENV": "local", "ATS_STATE_DIR": str(state), "DATABASE_URL": ""})
    assert db_pw in local.database_url and redis_pw in local.redis_url  # what was stored before
    resources = build_resources(local)
    for name, resource in resources.items():
        text = _config_text(resource)
        assert db_pw not in text and redis_pw not in text, name
    assert resources["timescale"].url == local.database_url
    assert resources["stream"].url == local.redis_url
    optuna = resources["models"]
    if optuna.optuna_url:
        assert optuna.optuna_password_file and db_pw not in optuna.optuna_url
    # and the suite's own managed cluster is reached through the file
    ours = build_resources(settings)["timescale"]
    assert ours.password_file and ":" not in ours.database_url.split("@")[0].split("//")[1]
    assert ours.run(lambda conn: conn.fetchval("select current_user")) == "ats"


def test_urls_lose_and_regain_their_password(tmp_path: Path) -> None:
    url = "postgresql://ats:s3cr%2Ft@127.0.0.1:5/x"
    bare = without_password(url)
    assert bare == "postgresql://ats@127.0.0.1:5/x"
    secret = tmp_path / "pw"
    secret.write_text("p/w@:\n")
    assert with_password(bare, str(secret)) == "postgresql://ats:p%2Fw%40%3A@127.0.0.1:5/x"
    assert with_password(bare, None) == bare
    assert with_password(bare, str(tmp_path / "missing")) == bare
    assert (
        with_password("redis://127.0.0.1:6/0", str(secret)) == "redis://:p%2Fw%40%3A@127.0.0.1:6/0"
    )
