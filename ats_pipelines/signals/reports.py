"""What the signal assets show a person: counts per type and timeframe, the latest rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from ats_pipelines.lib.timeframes import sort_timeframes
from ats_pipelines.warehouse.reports import markdown_table


async def signal_counts(
    conn: asyncpg.Connection, analyzer_id: str, exchange: str
) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(
        "SELECT timeframe, signal_type, count(*) AS n FROM signals.detected_signals "
        "WHERE analyzer_id = $1 AND exchange = $2 GROUP BY 1, 2",
        analyzer_id,
        exchange,
    )
    order = {tf: i for i, tf in enumerate(sort_timeframes(list({r[0] for r in rows})))}
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: (order[r[0]], r[1]))


async def latest_signals(
    conn: asyncpg.Connection, analyzer_id: str, exchange: str, limit: int = 10
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, symbol, timeframe, ts, signal_type, price FROM signals.detected_signals "
        "WHERE analyzer_id = $1 AND exchange = $2 ORDER BY ts DESC, id DESC LIMIT $3",
        analyzer_id,
        exchange,
        limit,
    )


async def decision_counts(
    conn: asyncpg.Connection, coordinator_id: str
) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(
        "SELECT decision, direction, count(*) FROM signals.coordinated_signals "
        "WHERE coordinator_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        coordinator_id,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def latest_decisions(conn: asyncpg.Connection, coordinator_id: str) -> list[asyncpg.Record]:
    """The last decision per symbol (``signals.latest_coordinated_signals``)."""
    return await conn.fetch(
        "SELECT exchange, symbol, decided_at, decision, direction, confidence, details "
        "FROM signals.latest_coordinated_signals WHERE coordinator_id = $1 "
        "ORDER BY exchange, symbol",
        coordinator_id,
    )


def counts_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return markdown_table(header, rows) if rows else "No rows yet."


def signals_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return counts_markdown(
        ("symbol", "timeframe", "bar open (UTC)", "type", "price"),
        [
            (
                r["symbol"],
                r["timeframe"],
                r["ts"].isoformat(),
                r["signal_type"],
                f"{r['price']:.8g}",
            )
            for r in rows
        ],
    )


def decisions_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return counts_markdown(
        ("symbol", "decided at (UTC)", "decision", "direction", "confidence"),
        [
            (
                r["symbol"],
                r["decided_at"].isoformat(),
                r["decision"],
                r["direction"],
                f"{r['confidence']:.3f}",
            )
            for r in rows
        ],
    )
