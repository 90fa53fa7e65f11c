"""Shared benchmark plumbing: a scratch database on the project's server, and result lines."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ats_pipelines.cli.db import ensure_up
from ats_pipelines.config import Settings, load_settings
from ats_pipelines.db.connect import connection, replace_database
from ats_pipelines.db.migrate import migrate
from ats_pipelines.db.sqlid import quote_ident


def ratio_line(name: str, ours: float, baseline: float, unit: str = "/s") -> str:
    return (
        f"{name}: ours {ours:,.0f}{unit}, baseline {baseline:,.0f}{unit}, "
        f"ratio {ours / baseline:.2f}"
    )


@asynccontextmanager
async def scratch_url(
    prefix: str = "ats_bench", settings: Settings | None = None
) -> AsyncIterator[str]:
    """URL of a freshly migrated database on the project's server, dropped afterwards, so
    benchmarks never touch real data."""
    settings = settings or load_settings({**os.environ, "ATS_ENV": "test"})
    ensure_up(settings)
    admin_url = replace_database(settings.database_url, "postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    async with connection(admin_url) as admin:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    url = replace_database(settings.database_url, name)
    try:
        async with connection(url) as conn:
            await migrate(conn)
        yield url
    finally:
        async with connection(admin_url) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


@asynccontextmanager
async def scratch_database(prefix: str = "ats_bench") -> AsyncIterator[asyncpg.Connection]:
    """A connection to a scratch database (see :func:`scratch_url`)."""
    async with scratch_url(prefix) as url, connection(url) as conn:
        yield conn
