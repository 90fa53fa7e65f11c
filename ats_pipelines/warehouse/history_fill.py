"""Filling the continuous aggregates over the history stored before they existed.

``sql/041_candle_rollups.timescale.sql`` creates the aggregates ``WITH NO DATA``. On a new
server that is right: the first refresh starts from the far past. After an edition upgrade
(Apache → Community) the server already holds minutes, and the rollup watermarks the
incremental path left make the refresh start near the present: without this fill the history
before them would never be materialised (measured: 288 of 864 5m bars, 1 of 3 1d bars).

The fill refreshes every level over the whole stored range of 1-minute bars, in windows of
``window`` (a bounded amount of work per transaction), bottom level first within each window,
recording progress in ``market.rollup_fill`` after each window so an interrupted fill resumes
where it stopped. It runs once per server (a finished row is remembered); a session advisory
lock keeps two runs from filling together. Must run outside a transaction (refreshes do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ats_pipelines.lib.timeframes import floor_datetime
from ats_pipelines.warehouse.coverage import server_now

log = logging.getLogger(__name__)

FILL_NAME = "candle_aggregates"
FILL_WINDOW = timedelta(days=7)
_LOCK = "ats:rollup_fill"


@dataclass
class FillResult:
    state: str  # "filled", "done" (nothing left), "busy" (another run holds the lock)
    windows: int = 0
    filled_to: datetime | None = None


async def _state(conn: asyncpg.Connection, now: datetime) -> asyncpg.Record | None:
    """The fill's row, created on first use over [first stored minute's day, now)."""
    row = await conn.fetchrow("SELECT * FROM market.rollup_fill WHERE name = $1", FILL_NAME)
    if row is not None:
        return row
    first = await conn.fetchval("SELECT min(ts) FROM market.candles WHERE timeframe = '1m'")
    start = floor_datetime(first, "1d") if first is not None else now
    return await conn.fetchrow(
        "INSERT INTO market.rollup_fill (name, range_start, range_end, filled_to, finished_at) "
        "VALUES ($1, $2::timestamptz, $3::timestamptz, $2::timestamptz, "
        "CASE WHEN $2::timestamptz >= $3::timestamptz THEN now() END) RETURNING *",
        FILL_NAME,
        start,
        now,
    )


async def _next_stored_day(conn: asyncpg.Connection, cursor: datetime, end: datetime) -> datetime:
    """Skip windows without minutes (chunk exclusion makes this an index probe)."""
    nxt = await conn.fetchval(
        "SELECT min(ts) FROM market.candles WHERE timeframe = '1m' AND ts >= $1 AND ts < $2",
        cursor,
        end,
    )
    return end if nxt is None else max(cursor, floor_datetime(nxt, "1d"))


async def _refresh(conn: asyncpg.Connection, target: str, start: datetime, end: datetime) -> None:
    lo, hi = floor_datetime(start, target), floor_datetime(end, target)
    if hi > lo:
        await conn.execute(
            "CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)",
            f"market.candles_{target}",
            lo,
            hi,
        )


async def fill_history(
    conn: asyncpg.Connection,
    targets: list[str],
    *,
    window: timedelta = FILL_WINDOW,
    max_windows: int | None = None,
    now: datetime | None = None,
) -> FillResult:
    """Refresh the aggregates ``targets`` (lowest first) over all stored history, window by
    window; at most ``max_windows`` windows per call (the rest on the next call)."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", _LOCK):
        return FillResult("busy")
    try:
        row = await _state(conn, now or await server_now(conn))
        assert row is not None
        if row["finished_at"] is not None:
            return FillResult("done", filled_to=row["filled_to"])
        cursor, end, windows = row["filled_to"], row["range_end"], 0
        while cursor < end and (max_windows is None or windows < max_windows):
            cursor = await _next_stored_day(conn, cursor, end)
            stop = min(cursor + window, end)
            for target in targets:
                await _refresh(conn, target, cursor, stop)
            await conn.execute(
                "UPDATE market.rollup_fill SET filled_to = $2::timestamptz, finished_at = "
                "CASE WHEN $2::timestamptz >= range_end THEN now() END WHERE name = $1",
                FILL_NAME,
                stop,
            )
            cursor, windows = stop, windows + 1
            log.info("event=rollup_fill_window filled_to=%s end=%s", stop.isoformat(), end)
        return FillResult("filled", windows, cursor)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", _LOCK)
