"""Rollups of 1-minute candles to 5m, 15m, 1h, 4h and 1d, on whichever path the server has.

* ``continuous_aggregate`` — under the TimescaleDB ``timescale`` licence,
  ``sql/041_candle_rollups.timescale.sql`` defines hierarchical continuous aggregates
  (``market.candles_5m`` from 1m, ``candles_15m`` from 5m, …). We refresh them ourselves over
  the range touched since the watermark, ending at the last bucket whose interval is over; the
  scheduler's policies are not relied on (DESIGN.md). History stored before the aggregates
  existed (an edition upgrade) is filled once first (:mod:`.history_fill`).
* ``incremental`` — everywhere else: rolled bars live in ``market.candles`` next to the minutes
  (timeframe ``5m`` …, source ``rollup``). A run recomputes only buckets holding a minute whose
  ``ingested_at`` is after the watermark (``sql/040`` moves ``ingested_at`` on every change),
  level by level (15m from 5m, like the aggregates), and only buckets whose interval is over.
  A touched bucket still open is remembered (``open_from``) and finished by a later run.

The watermark never passes the start of a transaction still running elsewhere: its rows become
visible later carrying ``ingested_at`` = its start, and must not fall behind the watermark.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from ats_pipelines.lib.timeframes import divides, floor_datetime, sort_timeframes, to_timedelta
from ats_pipelines.warehouse.config import ROLLUP_TIMEFRAMES
from ats_pipelines.warehouse.coverage import server_now
from ats_pipelines.warehouse.history_fill import fill_history
from ats_pipelines.warehouse.rollup_sql import bucket, rollup_upsert_sql

log = logging.getLogger(__name__)

INCREMENTAL = "incremental"
CONTINUOUS = "continuous_aggregate"
CAGG_MIGRATION = "041_candle_rollups.timescale.sql"
BASE = "1m"
_EPSILON = timedelta(microseconds=1)
_degradation_logged = False


async def server_edition(conn: asyncpg.Connection) -> str:
    """``postgresql``, ``apache`` or ``timescale`` (read-only: never creates the extension)."""
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") is None:
        return "postgresql"
    licence = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    return "timescale" if licence == "timescale" else "apache"


async def rollup_mode(conn: asyncpg.Connection) -> str:
    """Which path is active: the continuous aggregates exist only if their migration applied."""
    global _degradation_logged
    status = await conn.fetchval(
        "SELECT status FROM ats_meta.schema_migrations WHERE filename = $1", CAGG_MIGRATION
    )
    if status == "applied":
        return CONTINUOUS
    if not _degradation_logged:
        _degradation_logged = True
        log.warning(
            "event=rollup_degradation path=%s reason='continuous aggregates need the "
            "TimescaleDB timescale licence' fallback='incremental rollup asset writes "
            "market.candles'",
            INCREMENTAL,
        )
    return INCREMENTAL


def levels(timeframes: tuple[str, ...] | list[str] = ROLLUP_TIMEFRAMES) -> list[tuple[str, str]]:
    """``(source, target)`` pairs: each timeframe from the one below it, starting at 1m."""
    chain = [BASE, *[t for t in sort_timeframes(list(timeframes)) if t != BASE]]
    pairs = list(itertools.pairwise(chain))
    for source, target in pairs:
        if not divides(source, target):
            raise ValueError(f"cannot roll {source} up to {target}: buckets do not nest")
    return pairs


@dataclass
class LevelResult:
    timeframe: str
    source: str
    buckets: int = 0  # final buckets recomputed
    inserted: int = 0
    updated: int = 0
    pending_from: datetime | None = None  # earliest touched bucket not yet over


@dataclass
class RollupResult:
    exchange: str
    symbol: str
    mode: str
    watermark_from: datetime | None
    watermark_to: datetime | None
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(level.inserted + level.updated for level in self.levels)


_TOUCHED_SQL = """
SELECT DISTINCT {bucket} AS b FROM market.candles
WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' AND ingested_at > $3
"""

_WATERMARK_SQL = """
SELECT (SELECT max(ingested_at) FROM market.candles
        WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' AND ingested_at > $3) AS seen,
       (SELECT min(xact_start) FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL
          AND datname = current_database() AND backend_type = 'client backend') AS oldest
"""

_FAR_PAST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


async def _watermarks(
    conn: asyncpg.Connection, exchange: str, symbol: str, targets: list[str]
) -> tuple[datetime, dict[str, datetime | None]]:
    rows = {
        r["timeframe"]: r
        for r in await conn.fetch(
            "SELECT timeframe, watermark, open_from FROM market.rollup_watermarks "
            "WHERE exchange = $1 AND symbol = $2",
            exchange,
            symbol,
        )
    }
    marks = [rows[t]["watermark"] if t in rows else _FAR_PAST for t in targets]
    return min(marks), {t: rows[t]["open_from"] if t in rows else None for t in targets}


async def _next_watermark(
    conn: asyncpg.Connection, exchange: str, symbol: str, current: datetime
) -> datetime:
    row = await conn.fetchrow(_WATERMARK_SQL, exchange, symbol, current)
    assert row is not None
    if row["seen"] is None:
        return current
    cap = row["seen"] if row["oldest"] is None else min(row["seen"], row["oldest"] - _EPSILON)
    return max(current, cap)


async def _save(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    watermark: datetime,
    open_from: datetime | None,
) -> None:
    await conn.execute(
        "INSERT INTO market.rollup_watermarks (exchange, symbol, timeframe, watermark, "
        "open_from, updated_at) VALUES ($1, $2, $3, $4, $5, now()) "
        "ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET watermark = EXCLUDED.watermark,"
        " open_from = EXCLUDED.open_from, updated_at = now()",
        exchange,
        symbol,
        timeframe,
        watermark,
        open_from,
    )


async def rollup_incremental(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    timeframes: tuple[str, ...] | list[str] = ROLLUP_TIMEFRAMES,
    *,
    edition: str | None = None,
    now: datetime | None = None,
) -> RollupResult:
    """Recompute the touched, finished buckets of one symbol; one transaction, serialised per
    symbol by an advisory lock."""
    edition = edition or await server_edition(conn)
    pairs = levels(timeframes)
    targets = [t for _, t in pairs]
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"ats:rollup:{exchange}:{symbol}",
        )
        horizon = now or await server_now(conn)
        watermark, open_from = await _watermarks(conn, exchange, symbol, targets)
        new_watermark = await _next_watermark(conn, exchange, symbol, watermark)
        result = RollupResult(exchange, symbol, INCREMENTAL, watermark, new_watermark)
        touched = {
            r["b"]
            for r in await conn.fetch(
                _TOUCHED_SQL.format(bucket=bucket(edition, targets[0], "ts")),
                exchange,
                symbol,
                watermark,
            )
        }
        for index, (source, target) in enumerate(pairs):
            if index:
                touched = {floor_datetime(b, target) for b in touched}
            if open_from[target] is not None:
                touched |= {
                    r["b"]
                    for r in await conn.fetch(
                        f"SELECT DISTINCT {bucket(edition, target, 'ts')} AS b "  # noqa: S608
                        "FROM market.candles WHERE exchange = $1 AND symbol = $2 "
                        "AND timeframe = $3 AND ts >= $4 AND ts < $5",
                        exchange,
                        symbol,
                        source,
                        open_from[target],
                        horizon,
                    )
                }
            level = await _recompute(
                conn, edition, exchange, symbol, source, target, touched, horizon
            )
            result.levels.append(level)
            await _save(conn, exchange, symbol, target, new_watermark, level.pending_from)
    log.info(
        "event=rollup exchange=%s symbol=%s mode=%s written=%s %s",
        exchange,
        symbol,
        INCREMENTAL,
        result.rows_written,
        " ".join(f"{lv.timeframe}={lv.inserted}+{lv.updated}" for lv in result.levels),
    )
    return result


async def _recompute(
    conn: asyncpg.Connection,
    edition: str,
    exchange: str,
    symbol: str,
    source: str,
    target: str,
    touched: set[datetime],
    horizon: datetime,
) -> LevelResult:
    length = to_timedelta(target)
    final = sorted(b for b in touched if b + length <= horizon)
    pending = [b for b in touched if b + length > horizon]
    level = LevelResult(target, source, len(final), pending_from=min(pending, default=None))
    if final:
        rows = await conn.fetch(
            rollup_upsert_sql(edition, target),
            exchange,
            symbol,
            source,
            target,
            final,
            final[0],
            final[-1] + length,
        )
        level.inserted = sum(1 for r in rows if r["inserted"])
        level.updated = len(rows) - level.inserted
    return level


async def refresh_continuous(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    timeframes: tuple[str, ...] | list[str] = ROLLUP_TIMEFRAMES,
    *,
    now: datetime | None = None,
) -> RollupResult:
    """Refresh the continuous aggregates over what changed since the watermark, bottom level
    first, up to the last finished bucket of each (must run outside a transaction)."""
    targets = [t for _, t in levels(timeframes)]
    horizon = now or await server_now(conn)
    watermark, _ = await _watermarks(conn, exchange, symbol, targets)
    new_watermark = await _next_watermark(conn, exchange, symbol, watermark)
    first = await conn.fetchval(
        "SELECT min(ts) FROM market.candles WHERE exchange = $1 AND symbol = $2 "
        "AND timeframe = '1m' AND ingested_at > $3",
        exchange,
        symbol,
        watermark,
    )
    result = RollupResult(exchange, symbol, CONTINUOUS, watermark, new_watermark)
    for target in targets:
        level = LevelResult(target, "")
        if first is not None:
            start, end = floor_datetime(first, target), floor_datetime(horizon, target)
            if end > start:
                await conn.execute(
                    "CALL refresh_continuous_aggregate($1::regclass, "
                    "$2::timestamptz, $3::timestamptz)",
                    f"market.candles_{target}",
                    start,
                    end,
                )
                level.buckets = int((end - start) / to_timedelta(target))
        result.levels.append(level)
        await _save(conn, exchange, symbol, target, new_watermark, None)
    return result


async def rollup(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    timeframes: tuple[str, ...] | list[str] = ROLLUP_TIMEFRAMES,
    *,
    mode: str | None = None,
    now: datetime | None = None,
) -> RollupResult:
    """Roll one symbol up on the active path."""
    mode = mode or await rollup_mode(conn)
    if mode == CONTINUOUS:
        # history stored before the aggregates existed (an edition upgrade) first, once
        await fill_history(conn, [t for _, t in levels(timeframes)], now=now)
        return await refresh_continuous(conn, exchange, symbol, timeframes, now=now)
    return await rollup_incremental(conn, exchange, symbol, timeframes, now=now)
