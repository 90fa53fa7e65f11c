"""Backup and restore of the platform's database with pg_dump / pg_restore, TimescaleDB-aware.

The whole database is dumped, not only its market/ml/signals/ops schemas: a hypertable's rows
live in chunks whose catalog is the extension's own schemas, so a schema-restricted dump restores
empty hypertables. The dump runs in a snapshot exported by the transaction that fingerprints
every table (:mod:`ats_pipelines.db.fingerprint`), so the manifest written beside the dump
describes exactly what the dump holds, even while the system keeps writing.

Restore follows TimescaleDB's procedure: a fresh database, ``CREATE EXTENSION timescaledb`` at
the dump's version, ``timescaledb_pre_restore()``, a serial ``pg_restore`` (parallel jobs can
corrupt the extension's catalog), ``timescaledb_post_restore()``; then every table is
fingerprinted again and compared with the manifest. Roles are global, not in a dump: the roles
that own or were granted objects are listed in the manifest and must exist on the target.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ats_pipelines.db.connect import connection, database_name, describe_url, replace_database
from ats_pipelines.db.fingerprint import (
    SYSTEM_SCHEMA_SQL,
    TableFingerprint,
    differences,
    fingerprint,
)
from ats_pipelines.db.sqlid import quote_ident

log = logging.getLogger(__name__)
MANIFEST_FORMAT = 1
ROLES_SQL = f"""
SELECT DISTINCT pg_get_userbyid(o) FROM (
    SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {SYSTEM_SCHEMA_SQL}
    UNION ALL SELECT n.nspowner FROM pg_namespace n WHERE {SYSTEM_SCHEMA_SQL}
    UNION ALL SELECT (aclexplode(c.relacl)).grantee FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {SYSTEM_SCHEMA_SQL}
    UNION ALL SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n WHERE {SYSTEM_SCHEMA_SQL}
    UNION ALL SELECT datdba FROM pg_database WHERE datname = current_database()
) AS owners(o) WHERE o <> 0 ORDER BY 1
"""  # noqa: S608 - constants only


class BackupError(RuntimeError):
    """A backup or restore step failed; the message says which, where and why (no secrets)."""


@dataclass
class Manifest:
    """What a dump holds: versions to restore it with, roles it needs, every table's fingerprint."""

    database: str
    owner: str
    server_version: str
    timescaledb: str | None
    roles: list[str]
    tables: dict[str, TableFingerprint] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        doc = {
            "format": MANIFEST_FORMAT,
            **{k: getattr(self, k) for k in ("database", "owner", "server_version")},
            "timescaledb": self.timescaledb,
            "roles": self.roles,
            "tables": {name: fp.to_json() for name, fp in self.tables.items()},
        }
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {MANIFEST_FORMAT}")
            tables = {
                name: TableFingerprint(int(t["rows"]), str(t["checksum"]))
                for name, t in doc["tables"].items()
            }
            return cls(
                doc["database"],
                doc["owner"],
                doc["server_version"],
                doc["timescaledb"],
                list(doc["roles"]),
                tables,
            )
        except FileNotFoundError:
            raise BackupError(f"{path}: manifest not found (written by `ats db backup`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{path}: not a backup manifest ({exc})") from None


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".manifest.json")


def _libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying the password instead, so it
    never shows in a process listing."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is None:
        return url, env
    env["PGPASSWORD"] = parts.password
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + "@" if parts.username else ""
    bare = urlunsplit((parts.scheme, user + netloc[-1], parts.path, parts.query, parts.fragment))
    return bare, env


def client_tool(name: str) -> str:
    """``pg_dump``/``pg_restore`` of the newest PostgreSQL installed (a dump needs a client at
    least as new as the server), else from PATH (a container with only the client package)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parent.parent.name),
        reverse=True,
    )
    if found:
        return found[0]
    exe = shutil.which(name)
    if exe is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")
    return exe


async def _run_tool(name: str, args: list[str], url: str, what: str) -> str:
    target, env = _libpq_target(url)
    exe = client_tool(name)
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--dbname",
        target,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        lines = [ln for ln in err.decode(errors="replace").splitlines() if "error" in ln.lower()]
        reason = (lines or err.decode(errors="replace").splitlines() or ["no output"])[0]
        raise BackupError(f"{what} ({describe_url(url)}) failed: {reason}")
    return out.decode(errors="replace")


async def backup(url: str, dump: Path) -> Manifest:
    """Dump the database at ``url`` to ``dump`` (pg_dump custom format) and write its manifest."""
    dump.parent.mkdir(parents=True, exist_ok=True)
    async with connection(url) as conn, conn.transaction(isolation="repeatable_read"):
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        dumping = asyncio.create_task(
            _run_tool(
                "pg_dump",
                ["--format=custom", f"--snapshot={snapshot}", "--file", str(dump)],
                url,
                "pg_dump",
            )
        )
        try:
            manifest = Manifest(
                database=database_name(url),
                owner=str(
                    await conn.fetchval(
                        "SELECT pg_get_userbyid(datdba) FROM pg_database "
                        "WHERE datname = current_database()"
                    )
                ),
                server_version=str(await conn.fetchval("SHOW server_version")),
                timescaledb=await conn.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ),
                roles=[r[0] for r in await conn.fetch(ROLES_SQL)],
                tables=await fingerprint(conn),
            )
        finally:
            await dumping  # the snapshot must outlive pg_dump's use of it
    manifest.write(manifest_path(dump))
    log.info(
        "event=backup_written file=%s tables=%d rows=%d timescaledb=%s",
        dump,
        len(manifest.tables),
        sum(t.rows for t in manifest.tables.values()),
        manifest.timescaledb,
    )
    return manifest


async def _prepare_target(admin: asyncpg.Connection, name: str, owner: str, replace: bool) -> None:
    """Create the target database; an existing one is replaced only when asked."""
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    if exists and not replace:
        raise BackupError(
            f"database {name} exists; restore into a new name, or pass --replace to drop it"
        )
    if exists:
        await admin.execute(f"DROP DATABASE {quote_ident(name)} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {quote_ident(name)} OWNER {quote_ident(owner)}")


async def _check_target_server(admin: asyncpg.Connection, manifest: Manifest) -> None:
    have = {r[0] for r in await admin.fetch("SELECT rolname FROM pg_roles")}
    missing = [role for role in manifest.roles if role not in have]
    if missing:
        raise BackupError(
            f"roles {', '.join(missing)} do not exist on the target server; create them first "
            "(roles are global, not part of a dump)"
        )
    if manifest.timescaledb is None:
        return
    available = await admin.fetchval(
        "SELECT 1 FROM pg_available_extension_versions WHERE name = 'timescaledb' AND version = $1",
        manifest.timescaledb,
    )
    if not available:
        raise BackupError(
            f"the backup needs TimescaleDB {manifest.timescaledb}, which the target server does "
            "not have; restore on that version, then ALTER EXTENSION timescaledb UPDATE"
        )


async def restore(admin_url: str, dump: Path, target: str, *, replace: bool = False) -> Manifest:
    """Restore ``dump`` into database ``target`` on ``admin_url``'s server and verify it.

    ``admin_url`` must be a role that may create databases and restore the extension's catalog:
    the cluster owner (or the server's superuser).
    """
    if not await asyncio.to_thread(dump.is_file):
        raise BackupError(f"{dump}: backup file not found")
    manifest = await asyncio.to_thread(Manifest.read, manifest_path(dump))
    async with connection(replace_database(admin_url, "postgres")) as admin:
        await _check_target_server(admin, manifest)
        await _prepare_target(admin, target, manifest.owner, replace)
    target_url = replace_database(admin_url, target)
    if manifest.timescaledb:
        async with connection(target_url) as conn:
            # the managed cluster's template1 already holds the extension (db.cluster_roles)
            await conn.execute(
                "CREATE EXTENSION IF NOT EXISTS timescaledb "
                f"VERSION {quote_literal(manifest.timescaledb)}"
            )
            have = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            )
            if have != manifest.timescaledb:
                raise BackupError(
                    f"the new database {target} came with TimescaleDB {have} (from its template) "
                    f"but the backup needs {manifest.timescaledb}"
                )
            await conn.execute("SELECT timescaledb_pre_restore()")
    await _run_tool("pg_restore", ["--exit-on-error", str(dump)], target_url, "pg_restore")
    async with connection(target_url) as conn:
        if manifest.timescaledb:
            await conn.execute("SELECT timescaledb_post_restore()")
        await conn.execute("ANALYZE")
        problems = differences(manifest.tables, await fingerprint(conn))
    if problems:
        raise BackupError(f"restored {target} differs from the backup: " + "; ".join(problems))
    log.info(
        "event=backup_restored file=%s database=%s tables=%d verified=true",
        dump,
        target,
        len(manifest.tables),
    )
    return manifest


def quote_literal(value: str) -> str:
    """A version string as an SQL literal (CREATE EXTENSION … VERSION takes no parameters)."""
    return "'" + value.replace("'", "''") + "'"
