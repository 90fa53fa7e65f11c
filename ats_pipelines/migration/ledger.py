"""The migration ledger (``ops.migration_ledger``): one row per file version, keyed by batch id.

Statuses: pending → loading → loaded → verified → archived; failed (load or verification
failed, rows removed) and rolled_back (removed on demand). A worker holds a session advisory
lock on the batch while it works on it; a 'loading'/'loaded' row whose lock is free belongs to
a process that died, and is rolled back before the file is loaded again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ats_pipelines.migration.discovery import DiscoveredFile, UnmatchedFile

LOCK_NAMESPACE = 0x4D494752  # "MIGR": first key of the two-key advisory lock
DONE = ("verified", "archived")


@dataclass(frozen=True)
class LoadStats:
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_duplicate: int
    rows_inserted: int
    rows_existing: int
    first_ts: Any
    last_ts: Any
    source_checksum: str
    assumptions: dict[str, Any]
    timings: dict[str, Any]


async def claim(conn: asyncpg.Connection, file: DiscoveredFile, checksum: str) -> asyncpg.Record:
    """The ledger row of this file version, created 'pending' on first sight."""
    row = await conn.fetchrow(
        "INSERT INTO ops.migration_ledger (file_path, file_size, file_checksum, dataset, "
        "exchange, symbol, timeframe, market_type, price_type, root, relative_path, file_format, "
        "assumptions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb) "
        "ON CONFLICT (file_path, file_checksum) DO UPDATE SET updated_at = now() "
        "RETURNING *",
        str(file.path),
        file.size,
        checksum,
        file.dataset,
        file.exchange,
        file.symbol,
        file.timeframe,
        file.market_type,
        file.price_type,
        str(file.root),
        file.relative,
        file.fmt,
        json.dumps(file.assumptions),
    )
    assert row is not None
    return row


async def try_lock(conn: asyncpg.Connection, batch_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT pg_try_advisory_lock($1, ($2 % 2147483647)::int)", LOCK_NAMESPACE, batch_id
        )
    )


async def unlock(conn: asyncpg.Connection, batch_id: int) -> None:
    await conn.fetchval(
        "SELECT pg_advisory_unlock($1, ($2 % 2147483647)::int)", LOCK_NAMESPACE, batch_id
    )


async def mark_loading(
    conn: asyncpg.Connection, batch_id: int, assumptions: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE ops.migration_ledger SET status = 'loading', attempts = attempts + 1, "
        "started_at = now(), finished_at = NULL, verified_at = NULL, error = NULL, "
        "rows_read = 0, rows_accepted = 0, rows_quarantined = 0, rows_duplicate = 0, "
        "rows_inserted = 0, rows_existing = 0, first_ts = NULL, last_ts = NULL, "
        "source_checksum = NULL, loaded_checksum = NULL, verification = '{}'::jsonb, "
        "timings = '{}'::jsonb, assumptions = assumptions || $2::jsonb, updated_at = now() "
        "WHERE batch_id = $1",
        batch_id,
        json.dumps(assumptions),
    )


async def mark_loaded(conn: asyncpg.Connection, batch_id: int, stats: LoadStats) -> None:
    await conn.execute(
        "UPDATE ops.migration_ledger SET status = 'loaded', rows_read = $2, rows_accepted = $3, "
        "rows_quarantined = $4, rows_duplicate = $5, rows_inserted = $6, rows_existing = $7, "
        "first_ts = $8, last_ts = $9, source_checksum = $10, "
        "assumptions = assumptions || $11::jsonb, timings = $12::jsonb, finished_at = now(), "
        "updated_at = now() WHERE batch_id = $1",
        batch_id,
        stats.rows_read,
        stats.rows_accepted,
        stats.rows_quarantined,
        stats.rows_duplicate,
        stats.rows_inserted,
        stats.rows_existing,
        stats.first_ts,
        stats.last_ts,
        stats.source_checksum,
        json.dumps(stats.assumptions),
        json.dumps(stats.timings),
    )


async def mark_verified(
    conn: asyncpg.Connection,
    batch_id: int,
    loaded_checksum: str,
    verification: dict[str, Any],
    verify_seconds: float,
) -> None:
    await conn.execute(
        "UPDATE ops.migration_ledger SET status = 'verified', loaded_checksum = $2, "
        "verification = $3::jsonb, verified_at = now(), "
        "timings = timings || jsonb_build_object('verify_s', $4::float8), updated_at = now() "
        "WHERE batch_id = $1",
        batch_id,
        loaded_checksum,
        json.dumps(verification),
        verify_seconds,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    batch_id: int,
    error: str,
    *,
    status: str = "failed",
    verification: dict[str, Any] | None = None,
    loaded_checksum: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE ops.migration_ledger SET status = $2, error = $3, "
        "verification = coalesce($4::jsonb, verification), "
        "loaded_checksum = coalesce($5, loaded_checksum), finished_at = coalesce(finished_at, "
        "now()), updated_at = now() WHERE batch_id = $1",
        batch_id,
        status,
        error,
        json.dumps(verification) if verification else None,
        loaded_checksum,
    )


async def mark_archived(conn: asyncpg.Connection, batch_id: int, archived_path: str) -> None:
    await conn.execute(
        "UPDATE ops.migration_ledger SET status = 'archived', archived_path = $2, "
        "updated_at = now() WHERE batch_id = $1 AND status = 'verified'",
        batch_id,
        archived_path,
    )


async def fetch(conn: asyncpg.Connection, batch_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM ops.migration_ledger WHERE batch_id = $1", batch_id)


async def rows_for_path(conn: asyncpg.Connection, path: str) -> list[asyncpg.Record]:
    """Ledger rows of a file by its path (original or archived), newest first."""
    return await conn.fetch(
        "SELECT * FROM ops.migration_ledger WHERE file_path = $1 OR archived_path = $1 "
        "OR relative_path = $1 ORDER BY batch_id DESC",
        path,
    )


async def list_rows(
    conn: asyncpg.Connection,
    *,
    root: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ops.migration_ledger WHERE ($1::text IS NULL OR root = $1) "
        "AND ($2::text IS NULL OR status = $2) ORDER BY batch_id LIMIT $3",
        root,
        status,
        limit,
    )


async def record_unmatched(
    conn: asyncpg.Connection, root: str, unmatched: Sequence[UnmatchedFile]
) -> None:
    """Replace the list of unmatched files of ``root`` with this discovery's."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM ops.migration_unmatched WHERE root = $1 AND NOT (file_path = ANY($2))",
            root,
            [str(u.path) for u in unmatched],
        )
        await conn.executemany(
            "INSERT INTO ops.migration_unmatched (file_path, root, relative_path, file_size, "
            "reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (file_path) DO UPDATE SET "
            "reason = EXCLUDED.reason, file_size = EXCLUDED.file_size, last_seen_at = now()",
            [(str(u.path), root, u.relative, u.size, u.reason) for u in unmatched],
        )


async def list_unmatched(conn: asyncpg.Connection, root: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ops.migration_unmatched WHERE ($1::text IS NULL OR root = $1) "
        "ORDER BY file_path",
        root,
    )


def as_dict(row: asyncpg.Record) -> dict[str, Any]:
    """A ledger row with jsonb decoded and timestamps as ISO strings (reports, metadata)."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if key in ("assumptions", "verification", "timings") and isinstance(value, str):
            value = json.loads(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[key] = value
    return out
