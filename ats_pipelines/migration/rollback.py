"""Removing a file's batch again: only the rows its batch inserted (``batch_id`` tags them);
rows that were already there from other sources carry their own batch id and stay."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import asyncpg

from ats_pipelines.db.sqlid import qualified
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
        table = qualified(SPECS[dataset].table)
        # exchange/symbol narrow the scan to the file's series; batch_id alone decides
        status = await conn.execute(
            f"DELETE FROM {table} WHERE batch_id = $1 "  # noqa: S608
            "AND ($2::text IS NULL OR exchange = $2) AND ($3::text IS NULL OR symbol = $3)",
            batch_id,
            exchange,
            symbol,
        )
        rows = int(status.split()[-1])
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
    return RollbackResult(batch_id, row["file_path"], rows, quarantined, status)


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
    return [
        await rollback_batch(conn, r["batch_id"], reason)
        for r in rows
        if r["status"] != "rolled_back"
    ]


def _path_forms(target: str) -> list[str]:
    """As typed (relative path in the ledger), and absolute (what discovery records)."""
    return [target, os.path.abspath(os.path.expanduser(target))]
