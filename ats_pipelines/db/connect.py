"""Connections to PostgreSQL with errors a person can act on (host and port named, no secrets)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg


class DatabaseUnavailable(RuntimeError):
    """The server could not be reached or refused us; the message names host and port."""


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a URL, without user or password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    return f"{host}:{port}{parts.path or '/'}"


def replace_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def _explain(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "password authentication failed"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"not authorised: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "database does not exist"
    if isinstance(exc, socket.gaierror):
        return "host name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running? `ats db up` starts the local one)"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


async def connect(url: str, *, timeout: float = 10.0) -> asyncpg.Connection:
    """Open one connection, turning every failure into :class:`DatabaseUnavailable`."""
    try:
        return await asyncpg.connect(url, timeout=timeout)  # pyright: ignore[reportArgumentType]
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {_explain(exc)}"
        ) from exc


@asynccontextmanager
async def connection(url: str, *, timeout: float = 10.0) -> AsyncIterator[asyncpg.Connection]:
    """``async with connection(url) as conn:`` — closes the connection whatever happens."""
    conn = await connect(url, timeout=timeout)
    try:
        yield conn
    finally:
        await conn.close()


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """A pool with the same error translation as :func:`connect`."""
    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_url(url)}: {_explain(exc)}"
        ) from exc
    assert pool is not None
    return pool
