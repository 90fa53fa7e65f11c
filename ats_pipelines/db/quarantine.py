"""The quarantine writer: rejected input rows (``lib.validation.REJECT_SCHEMA`` frames) into
``ops.quarantine``, each bad row once per (dataset, source, rule, row hash)."""

from __future__ import annotations

import asyncpg
import polars as pl

from ats_pipelines.lib.validation import REJECT_SCHEMA

_QUARANTINE_SQL = """
WITH incoming AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::timestamptz[], $10::text[], $11::text[])
        AS r(rule, reason, location, exchange, symbol, timeframe, ts, payload, row_hash)
), inserted AS (
    INSERT INTO ops.quarantine (dataset, source, rule, reason, location, exchange, symbol,
                                timeframe, ts, payload, row_hash, batch_id)
    SELECT $1, $2, rule, reason, location, exchange, symbol, timeframe, ts, payload::jsonb,
           row_hash, $12
    FROM incoming
    ON CONFLICT (dataset, source, rule, row_hash) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""

_COLUMNS = (
    "rule",
    "reason",
    "location",
    "exchange",
    "symbol",
    "timeframe",
    "ts",
    "payload",
    "row_hash",
)


async def quarantine(
    conn: asyncpg.Connection,
    rejected: pl.DataFrame,
    *,
    dataset: str,
    source: str,
    batch_id: int | None = None,
    chunk_rows: int = 10_000,
) -> int:
    """Write rejected rows to ``ops.quarantine`` once; returns how many were new."""
    if rejected.is_empty():
        return 0
    missing = [c for c in REJECT_SCHEMA if c != "row" and c not in rejected.columns]
    if missing:
        raise ValueError(f"quarantine: rejected frame lacks column(s) {missing}")
    total = 0
    for start in range(0, rejected.height, chunk_rows):
        part = rejected.slice(start, chunk_rows)
        columns = [part[c].to_list() for c in _COLUMNS]
        inserted = await conn.fetchval(_QUARANTINE_SQL, dataset, source, *columns, batch_id)
        total += int(inserted or 0)
    return total
