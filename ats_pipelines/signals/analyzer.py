"""Analyzer runs: new closed bars of one (analyzer, exchange, symbol, timeframe) → signals.

A run reads the bars after the analyzer's watermark plus the ``lookback`` bars before them,
applies the trend rule, writes ``signals.detected_signals`` and moves the watermark to the newest
bar it read — all in **one transaction**. A crash anywhere before the commit leaves neither a
signal nor a moved watermark, so the next run does the same work again; a signal is never lost
or written twice (the natural key backs this up with ``ON CONFLICT DO NOTHING``).

Two locks, both released at commit:

* an advisory lock per (analyzer, exchange, symbol, timeframe) serialises runs of one series
  (a manual materialisation racing a sensor's run simply waits and then finds nothing new);
* :data:`WRITER_LOCK`, taken just before inserting, serialises every writer of
  ``detected_signals`` until it commits. Identity values are handed out in insert order, so
  with the lock they also become visible in id order — which is what lets the coordinator keep
  a plain "last processed id" watermark without skipping a signal committed late.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ats_pipelines.signals.bars import (
    BarSource,
    bar_source,
    closed_cutoff,
    datetime_to_ms,
    db_now,
    ms_to_datetime,
    newest_closed,
    read_bars,
)
from ats_pipelines.signals.config import SignalsSettings, TrendParams
from ats_pipelines.signals.trend import TrendSignal, detect_trend_signals

log = logging.getLogger(__name__)

WRITER_LOCK = "ats:signals:detected_signals:writer"

BeforeCommit = Callable[["AnalyzerBatch"], Awaitable[None]]


@dataclass(frozen=True)
class AnalyzerTarget:
    """One series an analyzer watches."""

    analyzer_id: str
    exchange: str
    symbol: str
    timeframe: str

    @property
    def lock_key(self) -> str:
        return f"ats:analyzer:{self.analyzer_id}:{self.exchange}:{self.symbol}:{self.timeframe}"

    def __str__(self) -> str:
        return f"{self.analyzer_id}:{self.exchange}:{self.symbol}:{self.timeframe}"


@dataclass(frozen=True)
class AnalyzerBatch:
    """What one transaction of a run did (handed to ``before_commit`` before it commits)."""

    target: AnalyzerTarget
    watermark_from: datetime | None
    watermark_to: datetime
    bars_new: int
    bars_history: int
    signals: list[TrendSignal]
    inserted: int


@dataclass
class AnalyzerRunResult:
    target: AnalyzerTarget
    watermark_from: datetime | None
    watermark_to: datetime | None
    batches: list[AnalyzerBatch] = field(default_factory=list)

    @property
    def bars_new(self) -> int:
        return sum(b.bars_new for b in self.batches)

    @property
    def signals(self) -> list[TrendSignal]:
        return [s for b in self.batches for s in b.signals]

    @property
    def inserted(self) -> int:
        return sum(b.inserted for b in self.batches)


_INSERT_SQL = """
INSERT INTO signals.detected_signals
    (analyzer_id, exchange, symbol, timeframe, ts, signal_type, price, details)
SELECT $1, $2, $3, $4, u.ts, u.signal_type, u.price, u.details::jsonb
FROM unnest($5::timestamptz[], $6::text[], $7::float8[], $8::text[])
     AS u(ts, signal_type, price, details)
ORDER BY u.ts, u.signal_type
ON CONFLICT ON CONSTRAINT detected_signals_natural_key DO NOTHING
RETURNING id
"""

_WATERMARK_SQL = """
INSERT INTO signals.analyzer_watermarks
    (analyzer_id, exchange, symbol, timeframe, last_processed_ts, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (analyzer_id, exchange, symbol, timeframe) DO UPDATE
SET last_processed_ts = GREATEST(signals.analyzer_watermarks.last_processed_ts,
                                 EXCLUDED.last_processed_ts),
    updated_at = now()
"""


def details_json(details: dict) -> str:
    """Stable JSON for a ``details`` column (sorted keys; floats in shortest round-trip form)."""
    return json.dumps(details, sort_keys=True, allow_nan=False)


async def watermark(conn: asyncpg.Connection, target: AnalyzerTarget) -> datetime | None:
    return await conn.fetchval(
        "SELECT last_processed_ts FROM signals.analyzer_watermarks WHERE analyzer_id = $1 "
        "AND exchange = $2 AND symbol = $3 AND timeframe = $4",
        target.analyzer_id,
        target.exchange,
        target.symbol,
        target.timeframe,
    )


async def insert_signals(
    conn: asyncpg.Connection, target: AnalyzerTarget, signals: list[TrendSignal]
) -> int:
    """Insert under :data:`WRITER_LOCK` (held until the caller's transaction ends)."""
    if not signals:
        return 0
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", WRITER_LOCK)
    rows = await conn.fetch(
        _INSERT_SQL,
        target.analyzer_id,
        target.exchange,
        target.symbol,
        target.timeframe,
        [s.ts for s in signals],
        [s.signal_type for s in signals],
        [s.price for s in signals],
        [details_json(s.details) for s in signals],
    )
    return len(rows)


async def _batch(
    conn: asyncpg.Connection,
    target: AnalyzerTarget,
    params: TrendParams,
    source: BarSource,
    cutoff: datetime,
    limit: int,
    before_commit: BeforeCommit | None,
) -> AnalyzerBatch | None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", target.lock_key)
        mark = await watermark(conn, target)
        bars, new = await read_bars(
            conn,
            source,
            target.exchange,
            target.symbol,
            after=mark,
            cutoff=cutoff,
            history=params.lookback,
            limit=limit,
        )
        if new == 0:
            return None
        after_ms = datetime_to_ms(mark) if mark is not None else None
        signals = detect_trend_signals(bars, params, after_ms=after_ms)
        inserted = await insert_signals(conn, target, signals)
        newest = ms_to_datetime(int(bars.ts[-1]))
        await conn.execute(
            _WATERMARK_SQL,
            target.analyzer_id,
            target.exchange,
            target.symbol,
            target.timeframe,
            newest,
        )
        batch = AnalyzerBatch(target, mark, newest, new, len(bars) - new, signals, inserted)
        if before_commit is not None:
            await before_commit(batch)
    return batch


async def run_analyzer(
    conn: asyncpg.Connection,
    target: AnalyzerTarget,
    params: TrendParams,
    *,
    now: datetime | None = None,
    batch_bars: int = 200_000,
    before_commit: BeforeCommit | None = None,
    source: BarSource | None = None,
) -> AnalyzerRunResult:
    """Analyse every closed bar after the watermark, ``batch_bars`` new bars per transaction.

    ``now`` (default: the server's clock) decides which bars are closed. ``before_commit`` is
    awaited inside each transaction after the writes (crash tests, the live service's
    latency). ``source``: where the bars live, if the caller looked it up already.
    """
    source = source or await bar_source(conn, target.timeframe)
    cutoff = closed_cutoff(now or await db_now(conn), target.timeframe)
    start = await watermark(conn, target)
    result = AnalyzerRunResult(target, start, start)
    while True:
        batch = await _batch(conn, target, params, source, cutoff, batch_bars, before_commit)
        if batch is None:
            break
        result.batches.append(batch)
        result.watermark_to = batch.watermark_to
        if batch.bars_new < batch_bars:
            break
    log.info(
        "event=analyzer_run analyzer=%s exchange=%s symbol=%s timeframe=%s bars=%d "
        "signals=%d inserted=%d watermark_from=%s watermark_to=%s",
        target.analyzer_id,
        target.exchange,
        target.symbol,
        target.timeframe,
        result.bars_new,
        len(result.signals),
        result.inserted,
        start.isoformat() if start else None,
        result.watermark_to.isoformat() if result.watermark_to else None,
    )
    return result


@dataclass(frozen=True)
class PendingAnalysis:
    """A series with closed bars newer than its watermark: the sensor's unit of work."""

    target: AnalyzerTarget
    newest: datetime
    watermark: datetime | None

    @property
    def run_key(self) -> str:
        return f"analyzer:{self.target}:{self.newest.isoformat()}"


async def pending_analyses(
    conn: asyncpg.Connection,
    settings: SignalsSettings,
    timeframe: str,
    *,
    now: datetime | None = None,
) -> list[PendingAnalysis]:
    """Per configured symbol: the newest closed ``timeframe`` bar, if after the watermark."""
    source = await bar_source(conn, timeframe)
    cutoff = closed_cutoff(now or await db_now(conn), timeframe)
    out = []
    for symbol in settings.symbols:
        target = AnalyzerTarget(settings.analyzer_id, settings.exchange, symbol, timeframe)
        newest = await newest_closed(conn, source, settings.exchange, symbol, cutoff)
        mark = await watermark(conn, target)
        if newest is not None and (mark is None or newest > mark):
            out.append(PendingAnalysis(target, newest, mark))
    return out


async def analyze(
    conn: asyncpg.Connection,
    settings: SignalsSettings,
    symbols: list[str] | tuple[str, ...] | None = None,
    timeframes: list[str] | tuple[str, ...] | None = None,
    *,
    now: datetime | None = None,
) -> list[AnalyzerRunResult]:
    """Run the analyzer of every requested (symbol, timeframe), defaults: all configured."""
    results = []
    for timeframe in timeframes or settings.timeframes:
        params = settings.params(timeframe)
        for symbol in symbols or settings.symbols:
            target = AnalyzerTarget(settings.analyzer_id, settings.exchange, symbol, timeframe)
            results.append(
                await run_analyzer(conn, target, params, now=now, batch_bars=settings.batch_bars)
            )
    return results
