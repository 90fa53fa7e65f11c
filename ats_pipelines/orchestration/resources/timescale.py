"""The database resource every asset, sensor and check uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
import dagster as dg

from ats_pipelines.db.connect import connection, create_pool, describe_url
from ats_pipelines.local_secrets import with_password

T = TypeVar("T")


class TimescaleResource(dg.ConfigurableResource):
    """PostgreSQL/TimescaleDB holding market data, ML and signals (asyncpg)."""

    database_url: str  # no password here: it would show in the UI (EnvVar or password_file)
    password_file: str | None = None  # the managed cluster's generated password, read per use

    @property
    def url(self) -> str:
        """The URL to connect with (the password added when it is used, never stored)."""
        return with_password(self.database_url, self.password_file)

    @property
    def address(self) -> str:
        """host:port/db, safe to log (no user, no password)."""
        return describe_url(self.database_url)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        async with connection(self.url) as conn:
            yield conn

    async def pool(self, max_size: int = 4) -> asyncpg.Pool:
        return await create_pool(self.url, max_size=max_size)

    def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` on a fresh connection from synchronous Dagster code."""

        async def body() -> T:
            async with self.connect() as conn:
                return await fn(conn)

        return asyncio.run(body())
