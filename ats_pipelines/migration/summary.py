"""Turning a run's outcomes (and their ledger rows) into the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from ats_pipelines.migration import ledger
from ats_pipelines.migration.loader import FileOutcome
from ats_pipelines.migration.report import ReportData, write_report
from ats_pipelines.migration.runner import RunResult
from ats_pipelines.migration.verify import iso


def _outcome_row(outcome: FileOutcome) -> dict[str, Any]:
    """A ledger-shaped row for outcomes without one (dry run, errors)."""
    f, stats = outcome.file, outcome.stats
    row: dict[str, Any] = {
        "relative_path": f.relative,
        "file_path": str(f.path),
        "dataset": f.dataset,
        "symbol": f.symbol,
        "timeframe": f.timeframe,
        "status": outcome.status,
        "assumptions": dict(f.assumptions),
        "error": outcome.message,
    }
    if stats is not None:
        row.update(
            rows_read=stats.rows_read,
            rows_quarantined=stats.rows_quarantined,
            rows_duplicate=stats.rows_duplicate,
            first_ts=iso(stats.digest.first_us),
            last_ts=iso(stats.digest.last_us),
            source_checksum=stats.digest.checksum,
        )
        row["assumptions"].update(stats.assumptions)
        if stats.grid is not None:
            row["verification"] = {"grid": stats.grid.report()}
    return row


async def run_rows(conn: asyncpg.Connection | None, result: RunResult) -> list[dict[str, Any]]:
    ids = [o.batch_id for o in result.outcomes if o.batch_id is not None]
    by_id: dict[int, dict[str, Any]] = {}
    if conn is not None and ids and not result.dry_run:
        records = await conn.fetch(
            "SELECT * FROM ops.migration_ledger WHERE batch_id = ANY($1::bigint[])", ids
        )
        by_id = {r["batch_id"]: ledger.as_dict(r) for r in records}
    rows = []
    for outcome in result.outcomes:
        row = by_id.get(outcome.batch_id) if outcome.batch_id is not None else None
        rows.append(row if row is not None else _outcome_row(outcome))
    return rows


def report_data(result: RunResult, rows: list[dict[str, Any]]) -> ReportData:
    meta = [
        ("root", str(result.root)),
        ("mode", "dry run (nothing written)" if result.dry_run else "migration"),
        ("started", result.started_at.isoformat(timespec="seconds")),
        (
            "finished",
            result.finished_at.isoformat(timespec="seconds") if result.finished_at else "-",
        ),
        ("seconds", f"{result.seconds:.1f}"),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(result.counts().items()))),
    ]
    notes = [
        "checksum: order-independent sum of 64-bit row hashes over (ts, o, h, l, c, v) "
        "(trades: ts, id, price, amount, cost, side), source vs database rows of the file's keys",
        "existing: rows whose key was already in the database (kept, compared, not re-inserted)",
    ]
    return ReportData(
        title=f"Legacy cache migration: {result.root.name or result.root}",
        meta=meta,
        rows=rows,
        unmatched=[(u.relative, u.reason) for u in result.unmatched],
        notes=notes,
    )


async def write_run_report(
    conn: asyncpg.Connection | None, result: RunResult, reports_dir: Path
) -> list[Path]:
    rows = await run_rows(conn, result)
    stem = ("dry-run-" if result.dry_run else "migration-") + result.started_at.strftime(
        "%Y%m%dT%H%M%SZ"
    )
    paths = write_report(report_data(result, rows), reports_dir, stem)
    result.report_paths = paths
    return paths
