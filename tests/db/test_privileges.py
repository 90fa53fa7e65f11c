"""Least privilege on the managed cluster: the platform's role is no superuser and owns its
schemas; ats_reader reads and cannot write; no other OS user gets in; migrations run for an
owner that is no superuser, as on an external server."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Callable
from urllib.parse import quote

import asyncpg
import pytest

from ats_pipelines.config import ADMIN_DB_USER, DEFAULT_DB_USER, READER_DB_USER, Settings
from ats_pipelines.db.cluster import LocalCluster
from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate


async def test_platform_role_owns_its_schemas_without_superuser(conn: asyncpg.Connection) -> None:
    me = await conn.fetchrow(
        "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    assert me is not None and tuple(me) == (DEFAULT_DB_USER, False, False)
    owners = await conn.fetch(
        "SELECT DISTINCT nspowner::regrole::text FROM pg_namespace "
        "WHERE nspname IN ('market', 'ml', 'signals', 'ops')"
    )
    assert [r[0] for r in owners] == [DEFAULT_DB_USER]


async def test_reader_selects_and_cannot_write(db_url: str, settings: Settings) -> None:
    url = settings.managed_url(READER_DB_USER, db_url.rsplit("/", 1)[1])
    async with connection(url) as reader:
        assert await reader.fetchval("SELECT count(*) FROM market.candles") is not None
        assert await reader.fetchval("SELECT count(*) FROM ops.migration_ledger") is not None
        for sql in (
            "INSERT INTO ops.stream_heartbeats (shard, exchange, symbols, started_at, last_beat) "
            "VALUES ('x', 'x', '{}', now(), now())",
            "DELETE FROM market.candles",
            "UPDATE ml.models SET model_id = model_id",
            "CREATE TABLE market.mine (x int)",
            "TRUNCATE market.trades",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(sql)


def test_no_other_os_user_connects(settings: Settings) -> None:
    assert os.geteuid() == 0, "switching to another OS user needs root (the suite runs as root)"
    socket_dir = settings.socket_dir
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    psql = str(LocalCluster(settings).install.bindir / "psql")
    attempts = {
        "socket": ["-h", str(socket_dir), "-U", ADMIN_DB_USER],
        "loopback as the platform": ["-h", "127.0.0.1", "-U", DEFAULT_DB_USER],
        "loopback as the admin": ["-h", "127.0.0.1", "-U", ADMIN_DB_USER],
    }
    port = ["-p", str(settings.db_port), "-d", "postgres"]
    for what, args in attempts.items():
        proc = subprocess.run(
            ["runuser", "-u", "nobody", "--", psql, "-w", *args, *port, "-tAc", "SELECT 1"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
        )
        assert proc.returncode != 0, what
        assert any(
            words in proc.stderr
            for words in ("Permission denied", "no password supplied", "password authentication")
        ), (what, proc.stderr)


async def test_migrations_run_for_an_owner_that_is_no_superuser(
    admin_sql: Callable[..., str], settings: Settings
) -> None:
    """As on an external server: the DBA makes a role and a database it owns, nothing more."""
    role, password = f"ext_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin_sql(
        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}';"
        f"CREATE DATABASE {role} OWNER {role};"
    )
    url = f"postgresql://{role}:{quote(password)}@127.0.0.1:{settings.db_port}/{role}"
    try:
        async with connection(url) as conn:
            assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
            report = await migrate(conn)
            assert report.edition in ("apache", "timescale") and report.applied
            assert not (await migrate(conn)).applied  # a second run has nothing to do
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'market' "
                "AND tablename = 'candles'"
            )
            assert owner == role
    finally:
        admin_sql(f"DROP DATABASE IF EXISTS {role} WITH (FORCE); DROP ROLE IF EXISTS {role};")
