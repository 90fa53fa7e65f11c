"""Removing a file's batch again: only what nobody but the batch asserted. Rows whose values the
batch set and no other writer asserted are deleted; rows another writer also asserted (the
exchange's backfill writing the same values, another file) are handed over to that writer;
rows whose values came from elsewhere stay untouched (see ``db.provenance``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import asyncpg

from ats_pipelines.db.provenance import retract_batch
from ats_pipelines.migration import ledger
from ats_pipelines.migration.datasets import SPECS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackResult:
    batch_id: int
    file_path: str
    rows_deleted: int
    quarantine_deleted: int
    status: str
    reopened: tuple[str, ...] = ()  # files set back to 'pending': they relied on these rows


async def delete_batch_rows(
    conn: asyncpg.Connection,
    batch_id: int,
    dataset: str | None,
    exchange: str | None,
    symbol: str | None,
) -> tuple[int, int]:
    """Delete the market rows and quarantine rows of ``batch_id``; returns both counts."""
    rows = 0
    if dataset in SPECS:
        span = await conn.fetchrow(
            "SELECT first_ts, last_ts FROM ops.migration_ledger WHERE batch_id = $1", batch_id
        )
        between = (span["first_ts"], span["last_ts"]) if span and span["last_ts"] else None
        series = {"exchange": exchange, "symbol": symbol}
        rows, handed = await retract_batch(conn, SPECS[dataset].table, batch_id, series, between)
        if handed:
            log.info(
                "event=migration_rows_handed_over batch=%d rows=%d reason='other writers "
                "asserted the same values'",
                batch_id,
                handed,
            )
    status = await conn.execute("DELETE FROM ops.quarantine WHERE batch_id = $1", batch_id)
    return rows, int(status.split()[-1])


async def rollback_batch(
    conn: asyncpg.Connection, batch_id: int, reason: str, *, status: str = "rolled_back"
) -> RollbackResult:
    """Remove a batch's rows and mark its ledger row ``status`` with ``reason``."""
    row = await ledger.fetch(conn, batch_id)
    if row is None:
        raise LookupError(f"no migration batch {batch_id} in the ledger")
    async with conn.transaction():
        rows, quarantined = await delete_batch_rows(
            conn, batch_id, row["dataset"], row["exchange"], row["symbol"]
        )
        await ledger.mark_failed(conn, batch_id, reason, status=status)
        reopened = await _reopen_dependents(conn, row) if rows else []
    for path in reopened:
        log.warning(
            "event=migration_reopened file=%s reason='rows it found present were "
            "removed by rollback of batch %d'",
            path,
            batch_id,
        )
    log.info(
        "event=migration_rollback batch=%d file=%s rows_deleted=%d quarantine_deleted=%d "
        "status=%s reason=%r",
        batch_id,
        row["file_path"],
        rows,
        quarantined,
        status,
        reason,
    )
    return RollbackResult(batch_id, row["file_path"], rows, quarantined, status, tuple(reopened))


async def _reopen_dependents(conn: asyncpg.Connection, row: asyncpg.Record) -> list[str]:
    """Verified files of the same series that found rows present (``rows_existing``) in this
    batch's time range may have relied on the rows just removed: set them back to 'pending'
    so the next run loads them again (their own batches stay; nothing is deleted)."""
    records = await conn.fetch(
        "UPDATE ops.migration_ledger SET status = 'pending', updated_at = now(), "
        "error = 'rows it found present were removed by rollback of batch ' || $1::text "
        "|| '; migrate it again' "
        "WHERE batch_id <> $1 AND status IN ('verified', 'archived') AND rows_existing > 0 "
        "AND dataset = $2 AND exchange = $3 AND symbol = $4 "
        "AND timeframe IS NOT DISTINCT FROM $5 AND price_type IS NOT DISTINCT FROM $6 "
        "AND first_ts <= $8 AND last_ts >= $7 RETURNING coalesce(archived_path, file_path)",
        row["batch_id"],
        row["dataset"],
        row["exchange"],
        row["symbol"],
        row["timeframe"],
        row["price_type"],
        row["first_ts"],
        row["last_ts"],
    )
    return [r[0] for r in records]


async def rollback_target(
    conn: asyncpg.Connection, target: str, reason: str
) -> list[RollbackResult]:
    """``target`` is a batch id or a file path (original, archived or relative): every batch
    of that file that still has rows or is not already rolled back is removed."""
    if target.isdigit():
        return [await rollback_batch(conn, int(target), reason)]
    rows = []
    for candidate in _path_forms(target):
        rows = rows or await ledger.rows_for_path(conn, candidate)
    if not rows:
        raise LookupError(f"no migration batch for file {target!r} in the ledger")
    files = sorted({r["file_path"] for r in rows})
    if len(files) > 1:
        # a relative path can name files under several roots: never guess which one
        raise LookupError(
            f"{target!r} matches several files ({', '.join(files)}); "
            "give the absolute path or a batch id"
        )
    return [
        await rollback_batch(conn, r["batch_id"], reason)
        for r in rows
        if r["status"] != "rolled_back"
    ]


def _path_forms(target: str) -> list[str]:
    """As typed (relative path in the ledger), and absolute (what discovery records)."""
    return [target, os.path.abspath(os.path.expanduser(target))]
