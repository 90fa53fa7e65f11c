"""The one place the environment is read.

Nothing reads ``os.environ`` at import time: callers ask for :func:`load_settings` when they need
settings, so tests can change the environment without reloading modules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ats_pipelines.local_secrets import read_secret

ATS_ENVS = ("local", "test", "prod")
DEFAULT_DB_PORT = 55432
DEFAULT_DB_NAME = "ats"
DEFAULT_DB_USER = "ats"  # the platform's role: owns its schemas, no superuser
ADMIN_DB_USER = "ats_admin"  # the managed cluster's superuser: roles and databases only
READER_DB_USER = "ats_reader"  # analysts and BI tools: SELECT only
REDIS_SECRET = "redis"
DEFAULT_REDIS_PORT = 56379
DEFAULT_WEBSERVER_PORT = 3000
DEFAULT_CODE_SERVER_PORT = 4266


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def project_root() -> Path:
    """The checkout this package lives in (the folder holding ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Settings of one process, resolved from the environment once per call."""

    ats_env: str
    state_dir: Path
    db_port: int
    db_name: str
    external_database_url: str | None
    redis_port: int = DEFAULT_REDIS_PORT
    external_redis_url: str | None = None
    lake_root: Path | None = None  # ATS_LAKE_DIR
    feast_registry_override: str | None = None  # ATS_FEAST_REGISTRY
    feast_online_store_override: str | None = None  # ATS_FEAST_ONLINE_STORE
    database_url_variable: str = "ATS_DATABASE_URL"  # the variable the external URL came from
    webserver_port: int = DEFAULT_WEBSERVER_PORT  # ATS_WEBSERVER_PORT (or PORT, Railway's)
    code_server_host: str = "127.0.0.1"  # ATS_CODE_SERVER_HOST
    code_server_port: int = DEFAULT_CODE_SERVER_PORT  # ATS_CODE_SERVER_PORT
    backfill_executor: str = "multiprocess"  # ATS_BACKFILL_EXECUTOR: multiprocess or celery

    @property
    def lake_dir(self) -> Path:
        """Root of the Parquet lake: exported market data, features and labels."""
        return self.lake_root or self.state_dir / "lake"

    @property
    def feast_dir(self) -> Path:
        return self.state_dir / "feast"

    @property
    def feast_repo(self) -> Path:
        """The Feast repository (``feature_store.yaml`` and the definitions module)."""
        return project_root() / "feature_repo"

    @property
    def feast_registry(self) -> str:
        """Feast registry: a file locally, a SQL URL in prod (ATS_FEAST_REGISTRY)."""
        return self.feast_registry_override or str(self.feast_dir / "registry.db")

    @property
    def feast_online_store(self) -> str:
        """Feast online store: a SQLite file locally, a Redis address in prod."""
        return self.feast_online_store_override or str(self.feast_dir / "online_store.db")

    @property
    def managed_redis(self) -> bool:
        return self.external_redis_url is None

    @property
    def redis_url(self) -> str:
        """The hot cache: ATS_REDIS_URL, or the project's own Redis started by `ats cache up`."""
        if self.external_redis_url:
            return self.external_redis_url
        password = read_secret(self.state_dir, REDIS_SECRET)
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.redis_port}/0"

    @property
    def managed_database(self) -> bool:
        """True when the project runs its own cluster under ``.ats/`` (no ATS_DATABASE_URL)."""
        return self.external_database_url is None

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def database_url(self) -> str:
        """Where the platform's data lives: the external server, or the managed cluster."""
        if self.external_database_url:
            return self.external_database_url
        return self.managed_url(DEFAULT_DB_USER)

    def managed_url(self, role: str, dbname: str | None = None) -> str:
        """The managed cluster as ``role`` over loopback, with the password generated for it
        (``ats db up`` writes it under ``<state_dir>/secrets``)."""
        password = read_secret(self.state_dir, role)
        auth = f"{role}:{password}" if password else role
        return f"postgresql://{auth}@127.0.0.1:{self.db_port}/{dbname or self.db_name}"

    def database_url_for(self, dbname: str) -> str:
        """The same server, another database (Dagster storage, Optuna, test databases)."""
        from ats_pipelines.db.connect import replace_database

        return replace_database(self.database_url, dbname)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, str(default))
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={port} is outside 1..65535")
    return port


DATABASE_URL_VARIABLES = ("ATS_DATABASE_URL", "DATABASE_URL")


def _database_url(env: Mapping[str, str]) -> tuple[str, str | None]:
    """The external server's URL and the variable it came from. ``ATS_DATABASE_URL`` wins;
    ``DATABASE_URL`` is what Railway's and Heroku's PostgreSQL add-ons inject."""
    for name in DATABASE_URL_VARIABLES:
        url = env.get(name) or None
        if url is None:
            continue
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{name} must start with postgresql:// (value not shown)")
        return name, url
    return DATABASE_URL_VARIABLES[0], None


BACKFILL_EXECUTORS = ("multiprocess", "celery")


def _backfill_executor(env: Mapping[str, str]) -> str:
    """Where the fan-out backfill's steps run. ``celery`` needs ``ATS_CELERY_BROKER_URL`` (a
    Redis URL; read by Dagster when a run starts, as it may hold a password)."""
    name = env.get("ATS_BACKFILL_EXECUTOR") or "multiprocess"
    if name not in BACKFILL_EXECUTORS:
        raise ConfigError(f"ATS_BACKFILL_EXECUTOR={name!r}: use {' or '.join(BACKFILL_EXECUTORS)}")
    if name == "celery" and not env.get("ATS_CELERY_BROKER_URL"):
        raise ConfigError("ATS_BACKFILL_EXECUTOR=celery needs ATS_CELERY_BROKER_URL (redis://…)")
    return name


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    ats_env = env.get("ATS_ENV", "local")
    if ats_env not in ATS_ENVS:
        raise ConfigError(f"ATS_ENV={ats_env!r} is not one of {', '.join(ATS_ENVS)}")
    state_dir = Path(env.get("ATS_STATE_DIR") or project_root() / ".ats")
    db_port = _port(env, "ATS_DB_PORT", DEFAULT_DB_PORT)
    db_name = env.get("ATS_DB_NAME", DEFAULT_DB_NAME)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", db_name):
        raise ConfigError(f"ATS_DB_NAME={db_name!r}: use lowercase letters, digits and _")
    url_variable, url = _database_url(env)
    redis_url = env.get("ATS_REDIS_URL") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("ATS_REDIS_URL must start with redis:// (value not shown)")
    return Settings(
        redis_port=_port(env, "ATS_REDIS_PORT", DEFAULT_REDIS_PORT),
        external_redis_url=redis_url,
        ats_env=ats_env,
        state_dir=state_dir,
        db_port=db_port,
        db_name=db_name,
        external_database_url=url,
        lake_root=Path(env["ATS_LAKE_DIR"]) if env.get("ATS_LAKE_DIR") else None,
        feast_registry_override=env.get("ATS_FEAST_REGISTRY") or None,
        feast_online_store_override=env.get("ATS_FEAST_ONLINE_STORE") or None,
        database_url_variable=url_variable,
        webserver_port=_port(env, "ATS_WEBSERVER_PORT", _port(env, "PORT", DEFAULT_WEBSERVER_PORT)),
        code_server_host=env.get("ATS_CODE_SERVER_HOST") or "127.0.0.1",
        code_server_port=_port(env, "ATS_CODE_SERVER_PORT", DEFAULT_CODE_SERVER_PORT),
        backfill_executor=_backfill_executor(env),
    )
