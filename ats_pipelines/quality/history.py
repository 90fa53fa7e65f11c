"""Check-run history and quality scores over time (``ops.quality_check_runs``,
``ops.quality_scores``): written by every check and report run, read by the report's "last run"
and "trend" columns. Writes are upserts on natural keys, so a retried step or a recomputed
window replaces its row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import polars as pl

_RECORD_RUN = """
INSERT INTO ops.quality_check_runs (run_id, asset, check_name, partition, passed, severity,
                                    blocking, rows_checked, coverage, failed, window_start,
                                    window_end, evaluated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, coalesce($13, now()))
ON CONFLICT (run_id, asset, check_name, partition) DO UPDATE SET
    passed = EXCLUDED.passed, severity = EXCLUDED.severity, blocking = EXCLUDED.blocking,
    rows_checked = EXCLUDED.rows_checked, coverage = EXCLUDED.coverage, failed = EXCLUDED.failed,
    window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
    evaluated_at = EXCLUDED.evaluated_at
"""
# One row per (asset, check, run): a run may evaluate several partitions or exchanges; the run
# passed when all of them did.
_RECENT_RUNS = """
WITH runs AS (
    SELECT asset, check_name, run_id, bool_and(passed) AS passed, max(severity) AS severity,
           max(evaluated_at) AS evaluated_at, max(id) AS last_id, count(*) AS evaluations,
           sum(rows_checked) AS rows_checked, min(coverage) AS coverage,
           coalesce(array_agg(partition ORDER BY partition) FILTER (WHERE NOT passed), '{}')
               AS failing_partitions,
           jsonb_agg(failed) AS failed
    FROM ops.quality_check_runs GROUP BY asset, check_name, run_id
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY asset, check_name
                                 ORDER BY evaluated_at DESC, last_id DESC) AS n
    FROM runs
)
SELECT asset, check_name, run_id, passed, severity, evaluated_at, evaluations, rows_checked,
       coverage, failing_partitions, failed::text AS failed
FROM ranked WHERE n <= $1 ORDER BY asset, check_name, evaluated_at DESC, last_id DESC
"""
_STORE_SCORE = """
INSERT INTO ops.quality_scores (dataset, exchange, source, symbol, window_start, window_end, rows,
                                completeness, freshness, validity, score, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
ON CONFLICT (dataset, exchange, source, symbol, window_end) DO UPDATE SET
    window_start = EXCLUDED.window_start, rows = EXCLUDED.rows,
    completeness = EXCLUDED.completeness, freshness = EXCLUDED.freshness,
    validity = EXCLUDED.validity, score = EXCLUDED.score, details = EXCLUDED.details,
    computed_at = now()
"""
_RECENT_SCORES = """
SELECT dataset, exchange, source, symbol, window_end, rows, completeness, freshness, validity,
       score
FROM (SELECT *, row_number() OVER (PARTITION BY dataset, exchange, source, symbol
                                   ORDER BY window_end DESC) AS n
      FROM ops.quality_scores) s
WHERE n <= $1 ORDER BY dataset, exchange, symbol, source, window_end DESC
"""
_QUARANTINED = """
SELECT exchange, symbol, source, count(*) AS rows FROM ops.quarantine
WHERE dataset = 'candles' AND timeframe = '1m' AND ts >= $1 AND ts < $2
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True)
class CheckRun:
    """One evaluation of one check (of one partition, or of a window)."""

    run_id: str
    asset: str
    check_name: str
    passed: bool
    severity: str = "ERROR"
    blocking: bool = False
    partition: str = ""
    rows_checked: int = 0
    coverage: float | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    evaluated_at: datetime | None = None


async def record_check_run(conn: asyncpg.Connection, run: CheckRun) -> None:
    await conn.execute(
        _RECORD_RUN,
        run.run_id,
        run.asset,
        run.check_name,
        run.partition,
        run.passed,
        run.severity,
        run.blocking,
        run.rows_checked,
        run.coverage,
        json.dumps(run.failed, default=str),
        run.window_start,
        run.window_end,
        run.evaluated_at,
    )


async def record_check_runs(conn: asyncpg.Connection, runs: Sequence[CheckRun]) -> None:
    async with conn.transaction():
        for run in runs:
            await record_check_run(conn, run)


async def recent_runs(conn: asyncpg.Connection, per_check: int = 10) -> list[dict[str, Any]]:
    """The latest ``per_check`` runs of every (asset, check), newest first; ``failed`` lists
    the failing expectations of all the run's evaluations."""
    rows = await conn.fetch(_RECENT_RUNS, per_check)
    return [
        {
            **dict(r),
            "failing_partitions": list(r["failing_partitions"]),
            "failed": [f for group in json.loads(r["failed"]) for f in group],
        }
        for r in rows
    ]


async def store_scores(conn: asyncpg.Connection, scores: pl.DataFrame) -> int:
    if scores.is_empty():
        return 0
    async with conn.transaction():
        for r in scores.iter_rows(named=True):
            await conn.execute(
                _STORE_SCORE,
                r["dataset"],
                r["exchange"],
                r["source"],
                r["symbol"],
                r["window_start"],
                r["window_end"],
                r["rows"],
                r["completeness"],
                r["freshness"],
                r["validity"],
                r["score"],
                json.dumps(r.get("details") or {}, default=str),
            )
    return scores.height


async def recent_scores(conn: asyncpg.Connection, per_series: int = 10) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_RECENT_SCORES, per_series)]


async def quarantined_counts(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> pl.DataFrame:
    rows = await conn.fetch(_QUARANTINED, start, end)
    schema = {"exchange": pl.String, "symbol": pl.String, "source": pl.String, "rows": pl.Int64}
    return pl.DataFrame([dict(r) for r in rows], schema=schema)
