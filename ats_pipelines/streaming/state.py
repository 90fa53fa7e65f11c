"""Saved stream state (``ops.stream_state``): what a restart resumes from.

The row of a symbol is written through the bars lane, after the bars it covers and in the
same transaction, so a saved state never claims bars the database does not hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyarrow as pa

from ats_pipelines.streaming.rows import utc
from ats_pipelines.streaming.spill import Batch

TABLE = "ops.stream_state"


def state_batch(
    exchange: str, symbol: str, shard: str, state: dict[str, Any], closed_before: int | None
) -> Batch:
    """The state of one symbol as a writer batch (upsert on (exchange, symbol))."""
    data = pa.table(
        {
            "exchange": pa.array([exchange], pa.string()),
            "symbol": pa.array([symbol], pa.string()),
            "shard": pa.array([shard], pa.string()),
            "state": pa.array([json.dumps(state, separators=(",", ":"))], pa.string()),
            "closed_before": pa.array(
                [utc(closed_before) if closed_before is not None and closed_before > 0 else None],
                pa.timestamp("us", tz="UTC"),
            ),
            "saved_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC")),
        }
    )
    return Batch(TABLE, data, on_conflict="update")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def load_state(conn: asyncpg.Connection, exchange: str, symbol: str) -> dict[str, Any] | None:
    text = await conn.fetchval(
        "SELECT state::text FROM ops.stream_state WHERE exchange = $1 AND symbol = $2",
        exchange,
        symbol,
    )
    return json.loads(text) if text is not None else None
