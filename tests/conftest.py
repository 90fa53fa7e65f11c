"""Suite-wide fixtures: a real PostgreSQL/TimescaleDB server and a fresh database per session.

The managed cluster under .ats/ is started when needed (or ATS_DATABASE_URL's server is used);
each test session gets its own database, migrated, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from ats_pipelines.cache.server import ensure_redis
from ats_pipelines.cli.db import ensure_up
from ats_pipelines.config import ADMIN_DB_USER, Settings, load_settings
from ats_pipelines.db.cluster import LocalCluster
from ats_pipelines.db.connect import connection, replace_database
from ats_pipelines.db.migrate import MigrationReport, migrate
from ats_pipelines.db.sqlid import quote_ident

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"


def run_sync(coro):
    """Run a coroutine to completion from sync or async code (a worker thread has no loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _testdata_dir() -> Path:
    env = os.environ.get("ATS_TESTDATA")
    return Path(env) if env else TESTDATA


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The real exchange data in ../shared/testdata (see its README)."""
    path = _testdata_dir()
    assert path.is_dir(), f"test data not found at {path}; set ATS_TESTDATA"
    return path


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings({**os.environ, "ATS_ENV": "test"})


@pytest.fixture(scope="session")
def redis_url(settings: Settings) -> str:
    """The hot cache's Redis (the project's own on 56379, started if needed)."""
    ensure_redis(settings)
    return settings.redis_url


@pytest.fixture(scope="session")
def server_url(settings: Settings) -> str:
    """URL of the maintenance database on the test server, started if it is ours."""
    ensure_up(settings)
    return replace_database(settings.database_url, "postgres")


@pytest.fixture(scope="session")
def admin_sql(settings: Settings, server_url: str) -> Callable[..., str]:
    """``admin_sql(sql, dbname="postgres")`` runs SQL as the managed cluster's superuser (its
    owner's peer login over the socket) and returns psql's output: what only an administrator
    may do, such as creating roles. The platform's own role cannot."""
    cluster = LocalCluster(settings)

    def run(sql: str, dbname: str = "postgres") -> str:
        assert settings.managed_database, "admin_sql needs the managed cluster (no superuser URL)"
        return cluster.run(cluster.psql(ADMIN_DB_USER, dbname), "test admin SQL", stdin=sql).stdout

    return run


async def _create_database(server_url: str, name: str) -> None:
    async with connection(server_url) as conn:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")


async def _drop_database(server_url: str, name: str) -> None:
    # Our own sessions only: TimescaleDB's workers run as the superuser, which the platform's
    # role may not end (so neither may WITH (FORCE)); DROP DATABASE stops them itself. The
    # timeout makes pg_terminate_backend wait until each session has exited: right after a
    # bare signal, a DROP under load can still find one ("being accessed by other users").
    async with connection(server_url) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE datname = $1 "
            "AND pg_has_role(usesysid, 'MEMBER')",
            name,
        )
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")


@pytest.fixture(scope="session")
def make_database(server_url: str) -> Iterator:
    """Factory of empty databases on the test server, all dropped when the session ends."""
    created: list[str] = []

    def make(prefix: str = "ats_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        run_sync(_create_database(server_url, name))
        created.append(name)
        return replace_database(server_url, name)

    yield make
    for name in created:
        run_sync(_drop_database(server_url, name))


@pytest.fixture(scope="session")
def migration_report(make_database) -> tuple[str, MigrationReport]:
    url = make_database()

    async def body() -> MigrationReport:
        async with connection(url) as conn:
            return await migrate(conn)

    return url, run_sync(body())


@pytest.fixture(scope="session")
def db_url(migration_report: tuple[str, MigrationReport]) -> str:
    """A migrated database shared by the session; tests clean up what they add or use
    unique keys."""
    return migration_report[0]


@pytest.fixture(scope="session")
def server_license(db_url: str) -> str:
    """The TimescaleDB licence the test server runs ('apache' in CI, 'timescale' under
    `make test-community`), read from the server in a database with the extension: tests
    assert per edition."""

    async def read() -> str:
        async with connection(db_url) as conn:
            value = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
            return str(value)  # 'None' (no extension) matches no edition a test expects

    return run_sync(read())


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with connection(db_url) as c:
        yield c
