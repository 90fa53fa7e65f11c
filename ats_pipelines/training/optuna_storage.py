"""Where Optuna keeps studies: a database on the platform's server, created when missing."""

from __future__ import annotations

import asyncio
import warnings

import optuna


async def _ensure_database(url: str) -> None:
    from ats_pipelines.db.connect import connection, database_name, replace_database
    from ats_pipelines.db.sqlid import quote_ident

    name = database_name(url)
    async with connection(replace_database(url, "postgres")) as admin:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
            except Exception as exc:  # a concurrent creator won the race
                if "already exists" not in str(exc):
                    raise


def ensure_optuna_database(sqlalchemy_url: str) -> None:
    """Create the Optuna database on the platform's server if it does not exist yet."""
    plain = "postgresql://" + sqlalchemy_url.split("://", 1)[1]
    asyncio.run(_ensure_database(plain))


def open_storage(url: str | None, create_database: bool) -> optuna.storages.BaseStorage | None:
    """The study storage (None: in-memory studies); heartbeats let a resumed request fail a
    crashed run's trial."""
    if url is None:
        return None
    if create_database:
        ensure_optuna_database(url)
    with warnings.catch_warnings():  # heartbeats are "experimental" since optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=60,
            grace_period=180,
        )
