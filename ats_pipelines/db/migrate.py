"""The migration runner: numbered files in ``sql/``, applied in order, each once.

A file named ``NNN_name.sql`` runs on every server. ``NNN_name.timescaledb.sql`` needs the
TimescaleDB extension and ``NNN_name.timescale.sql`` its Community (``timescale``) licence;
where the server lacks it, the file is recorded as skipped with the fallback its header names
(``-- fallback: …``), the degradation is logged once, and the file is applied later if the
server gains the capability. An applied file whose content changed is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from ats_pipelines.config import project_root
from ats_pipelines.db.reader import grant_reader

log = logging.getLogger(__name__)

EDITIONS = ("postgresql", "apache", "timescale")
_REQUIREMENT_RANK = {None: 0, "timescaledb": 1, "timescale": 2}
_EDITION_RANK = {"postgresql": 0, "apache": 1, "timescale": 2}
_FILE_RE = re.compile(
    r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)(?:\.(?P<req>timescaledb|timescale))?\.sql$"
)
_LOCK_KEY = 0x415453_4D4947  # "ATSMIG": serialises concurrent runners on one database


class MigrationError(RuntimeError):
    """A migration file is malformed, failed, or was edited after it was applied."""


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path
    requires: str | None
    sql: str
    checksum: str
    fallback: str | None
    transactional: bool

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class MigrationReport:
    """What one run of the runner found and did."""

    edition: str
    timescaledb_version: str | None
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    degradations: dict[str, str] = field(default_factory=dict)

    @property
    def changed_anything(self) -> bool:
        return bool(self.applied or self.skipped)


def default_sql_dir() -> Path:
    return project_root() / "sql"


def load_migrations(sql_dir: Path | None = None) -> list[MigrationFile]:
    """Parse every ``*.sql`` in ``sql_dir``; names not of the documented form are errors."""
    directory = sql_dir or default_sql_dir()
    files: list[MigrationFile] = []
    seen: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(
                f"{path}: file name must look like NNN_name.sql, NNN_name.timescaledb.sql "
                "or NNN_name.timescale.sql"
            )
        version = int(match["version"])
        if version in seen:
            raise MigrationError(f"{path}: version {version:03d} is also used by {seen[version]}")
        seen[version] = path.name
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        fallback = _header_value(text, "fallback")
        if match["req"] and not fallback:
            raise MigrationError(f"{path}: an edition-specific file must name its '-- fallback:'")
        files.append(
            MigrationFile(
                version=version,
                name=match["name"],
                path=path,
                requires=match["req"],
                sql=text,
                checksum=hashlib.sha256(raw).hexdigest(),
                fallback=fallback,
                transactional="-- ats:no-transaction" not in text,
            )
        )
    return files


def _header_value(text: str, key: str) -> str | None:
    """``-- key: value`` from the leading comment block, continuation lines joined."""
    value: list[str] = []
    capturing = False
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        body = line[2:].strip()
        if body.startswith(f"{key}:"):
            value.append(body[len(key) + 1 :].strip())
            capturing = True
        elif capturing and line.startswith("--   "):
            value.append(body)
        else:
            capturing = False
    return " ".join(value) or None


async def detect_edition(conn: asyncpg.Connection) -> tuple[str, str | None]:
    """``(edition, timescaledb version)``, creating the extension when the server offers it."""
    available = await conn.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if available is None:
        return "postgresql", None
    installed = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if installed is None and not await _preloaded(conn):
        # CREATE EXTENSION without the preload makes TimescaleDB end the session (FATAL).
        log.warning(
            "event=timescaledb_not_preloaded edition=postgresql "
            "hint='add timescaledb to shared_preload_libraries to use it'"
        )
        return "postgresql", None
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        log.warning(
            "event=timescaledb_unusable reason=%r edition=postgresql "
            "hint='add timescaledb to shared_preload_libraries'",
            str(exc).splitlines()[0],
        )
        return "postgresql", None
    version = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    return ("timescale" if license_ == "timescale" else "apache"), version


async def _preloaded(conn: asyncpg.Connection) -> bool:
    """Whether TimescaleDB's loader is in shared_preload_libraries. A role that is neither
    superuser nor pg_read_all_settings may not read that setting; the loader's own setting
    ``timescaledb.disable_load`` exists exactly when the loader is loaded."""
    try:
        preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
        return "timescaledb" in (preload or "")
    except asyncpg.InsufficientPrivilegeError:
        probe = "SELECT current_setting('timescaledb.disable_load', true)"
        return await conn.fetchval(probe) is not None


def supports(edition: str, requires: str | None) -> bool:
    return _EDITION_RANK[edition] >= _REQUIREMENT_RANK[requires]


_LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS ats_meta;
CREATE TABLE IF NOT EXISTS ats_meta.schema_migrations (
    version      integer     PRIMARY KEY,
    filename     text        NOT NULL,
    checksum     text        NOT NULL,
    requires     text,
    status       text        NOT NULL CHECK (status IN ('applied', 'skipped')),
    edition      text        NOT NULL,
    note         text,
    duration_ms  double precision,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
"""


async def migrate(conn: asyncpg.Connection, sql_dir: Path | None = None) -> MigrationReport:
    """Bring the database up to date; safe to run any number of times, from several processes."""
    files = load_migrations(sql_dir)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        edition, ts_version = await detect_edition(conn)
        await conn.execute(_LEDGER_DDL)
        report = MigrationReport(edition=edition, timescaledb_version=ts_version)
        recorded = {
            r["version"]: r for r in await conn.fetch("SELECT * FROM ats_meta.schema_migrations")
        }
        for mf in files:
            await _migrate_one(conn, mf, recorded.get(mf.version), edition, report)
        await grant_reader(conn)
        return report
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _migrate_one(
    conn: asyncpg.Connection,
    mf: MigrationFile,
    row: asyncpg.Record | None,
    edition: str,
    report: MigrationReport,
) -> None:
    if row is not None and row["filename"] != mf.filename:
        raise MigrationError(
            f"sql/{mf.filename}: version {mf.version:03d} was applied as {row['filename']}; "
            "renumber the new file instead of reusing an applied version"
        )
    if row is not None and row["status"] == "applied":
        if row["checksum"] != mf.checksum:
            raise MigrationError(
                f"sql/{mf.filename} was changed after it was applied (checksum "
                f"{row['checksum'][:12]} recorded, {mf.checksum[:12]} now); put the change in a "
                "new numbered file"
            )
        report.unchanged.append(mf.filename)
        return
    if not supports(edition, mf.requires):
        if row is None:
            await conn.execute(
                "INSERT INTO ats_meta.schema_migrations "
                "(version, filename, checksum, requires, status, edition, note) "
                "VALUES ($1, $2, $3, $4, 'skipped', $5, $6)",
                mf.version,
                mf.filename,
                mf.checksum,
                mf.requires,
                edition,
                mf.fallback,
            )
            log.warning(
                "event=edition_degradation file=%s edition=%s requires=%s fallback=%r",
                mf.filename,
                edition,
                mf.requires,
                mf.fallback,
            )
            report.skipped.append(mf.filename)
        else:
            report.unchanged.append(mf.filename)
        report.degradations[mf.filename] = mf.fallback or ""
        return
    started = time.perf_counter()
    try:
        if mf.transactional:
            async with conn.transaction():
                await conn.execute(mf.sql)
                await _record_applied(conn, mf, edition, started)
        else:
            await conn.execute(mf.sql)
            await _record_applied(conn, mf, edition, started)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"sql/{mf.filename} failed: {exc}") from exc
    log.info("event=migration_applied file=%s edition=%s", mf.filename, edition)
    report.applied.append(mf.filename)


async def _record_applied(
    conn: asyncpg.Connection, mf: MigrationFile, edition: str, started: float
) -> None:
    await conn.execute(
        "INSERT INTO ats_meta.schema_migrations "
        "(version, filename, checksum, requires, status, edition, duration_ms) "
        "VALUES ($1, $2, $3, $4, 'applied', $5, $6) "
        "ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, status = 'applied', "
        "edition = EXCLUDED.edition, note = NULL, duration_ms = EXCLUDED.duration_ms, "
        "recorded_at = now()",
        mf.version,
        mf.filename,
        mf.checksum,
        mf.requires,
        edition,
        (time.perf_counter() - started) * 1000,
    )


async def applied_migrations(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT version, filename, status, edition, note, recorded_at "
        "FROM ats_meta.schema_migrations ORDER BY version"
    )
