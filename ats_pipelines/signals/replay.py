"""Replay: the analyzers and the coordinator over a historical range, from the stored bars only.

:func:`replay` reads bars, never writes, and returns what the live path writes for the same bars:
the trend rule per (symbol, timeframe) over ``[start, end)`` and the coordinator's decisions at
moments in ``(start, end]``. It reads ``lookback`` bars before the range (the rule's history) and
starts the analysis ``window + longest timeframe`` earlier still, so decisions early in the range
see the signals they would have seen live. :func:`compare_with_live` puts the result next to the
live tables row by row — natural keys, prices, confidence and ``details``; never ids or
insertion times, which record arrival, not content.

Both paths agree because the rule judges a bar only by itself and its ``lookback`` predecessors,
and the coordinator decides only once every timeframe is final (``coordinator.py``). Live output
can differ only when the stored bars changed behind the live path's watermark after it analysed
them — a corrected bar, or history backfilled before bars the analyzer had already seen — which
is exactly what a mismatch here should reveal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.signals.analyzer import details_json
from ats_pipelines.signals.bars import bar_source, closed_cutoff, db_now, read_bars
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.coordinator import Decision, SignalRef, decide
from ats_pipelines.signals.trend import TrendSignal, detect_trend_signals

_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class DetectedRow:
    """A ``detected_signals`` row without its id and insertion time."""

    analyzer_id: str
    exchange: str
    symbol: str
    timeframe: str
    ts: datetime
    signal_type: str
    price: float
    details: dict[str, Any]

    def ref(self) -> SignalRef:
        return SignalRef(
            self.exchange, self.symbol, self.timeframe, self.ts, self.signal_type, self.price
        )

    def key(self) -> tuple:
        return (
            self.analyzer_id,
            self.exchange,
            self.symbol,
            self.timeframe,
            self.ts.isoformat(),
            self.signal_type,
            self.price,
            details_json(self.details),
        )


def decision_key(d: Decision) -> tuple:
    return (
        d.coordinator_id,
        d.exchange,
        d.symbol,
        d.decided_at.isoformat(),
        d.direction,
        d.decision,
        d.confidence,
        details_json(d.details),
    )


@dataclass
class ReplayResult:
    analyzer_id: str
    coordinator_id: str
    exchange: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    start: datetime
    end: datetime  # the range's end, capped at the clock: only closed bars are replayed
    signals: list[DetectedRow] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """Replay vs live rows of the same range; ``only_*`` hold the differing natural keys."""

    live_signals: int
    live_decisions: int
    only_live: list[tuple]
    only_replay: list[tuple]

    @property
    def matches(self) -> bool:
        return not self.only_live and not self.only_replay

    def as_dict(self, limit: int = 20) -> dict[str, Any]:
        return {
            "only_live": [list(map(str, k[:7])) for k in self.only_live[:limit]],
            "only_replay": [list(map(str, k[:7])) for k in self.only_replay[:limit]],
            "only_live_count": len(self.only_live),
            "only_replay_count": len(self.only_replay),
        }


def _row(settings: SignalsSettings, symbol: str, timeframe: str, s: TrendSignal) -> DetectedRow:
    return DetectedRow(
        settings.analyzer_id,
        settings.exchange,
        symbol,
        timeframe,
        s.ts,
        s.signal_type,
        s.price,
        s.details,
    )


async def replay(
    conn: asyncpg.Connection,
    settings: SignalsSettings,
    start: datetime,
    end: datetime,
    *,
    symbols: list[str] | tuple[str, ...] | None = None,
    now: datetime | None = None,
) -> ReplayResult:
    """Signals with bars opened in ``[start, end)`` and decisions made in ``(start, end]``."""
    if start >= end:
        raise ValueError(
            f"replay range is empty: start {start.isoformat()} >= end {end.isoformat()}"
        )
    rules = settings.coordinator
    horizon = min(end, now or await db_now(conn))
    pad = rules.window + max(to_timedelta(tf) for tf in rules.timeframes)
    chosen = tuple(symbols or settings.symbols)
    result = ReplayResult(
        settings.analyzer_id,
        rules.coordinator_id,
        settings.exchange,
        chosen,
        tuple(settings.timeframes),
        start,
        horizon,
    )
    inputs: dict[str, list[SignalRef]] = {s: [] for s in chosen}
    for timeframe in settings.timeframes:
        params = settings.params(timeframe)
        source = await bar_source(conn, timeframe)
        for symbol in chosen:
            bars, _ = await read_bars(
                conn,
                source,
                settings.exchange,
                symbol,
                after=start - pad - _JUST_BEFORE,
                cutoff=closed_cutoff(horizon, timeframe),
                history=params.lookback,
            )
            for signal in detect_trend_signals(bars, params):
                if signal.ts < start - pad:
                    continue
                row = _row(settings, symbol, timeframe, signal)
                inputs[symbol].append(row.ref())
                if signal.ts >= start:
                    result.signals.append(row)
    for symbol in chosen:
        group = [s for s in inputs[symbol] if s.timeframe in rules.timeframes]
        for at in sorted({s.known_at for s in group}):
            if start < at <= horizon:
                result.decisions.append(decide(group, at, rules))
    result.signals.sort(key=lambda r: (r.symbol, r.timeframe, r.ts, r.signal_type))
    return result


async def live_rows(
    conn: asyncpg.Connection, result: ReplayResult
) -> tuple[list[DetectedRow], list[tuple]]:
    """The live path's signals and decision keys of the replay's range and series."""
    rows = await conn.fetch(
        "SELECT analyzer_id, exchange, symbol, timeframe, ts, signal_type, price, details "
        "FROM signals.detected_signals WHERE analyzer_id = $1 AND exchange = $2 "
        "AND symbol = ANY($3::text[]) AND timeframe = ANY($4::text[]) AND ts >= $5 AND ts < $6",
        result.analyzer_id,
        result.exchange,
        list(result.symbols),
        list(result.timeframes),
        result.start,
        result.end,
    )
    signals = [
        DetectedRow(
            r["analyzer_id"],
            r["exchange"],
            r["symbol"],
            r["timeframe"],
            r["ts"],
            r["signal_type"],
            r["price"],
            json.loads(r["details"]),
        )
        for r in rows
    ]
    signals = [s for s in signals if s.ts + to_timedelta(s.timeframe) <= result.end]
    decisions = await conn.fetch(
        "SELECT coordinator_id, exchange, symbol, decided_at, direction, decision, confidence, "
        "details FROM signals.coordinated_signals WHERE coordinator_id = $1 AND exchange = $2 "
        "AND symbol = ANY($3::text[]) AND decided_at > $4 AND decided_at <= $5",
        result.coordinator_id,
        result.exchange,
        list(result.symbols),
        result.start,
        result.end,
    )
    keys = [
        (
            r["coordinator_id"],
            r["exchange"],
            r["symbol"],
            r["decided_at"].isoformat(),
            r["direction"],
            r["decision"],
            r["confidence"],
            details_json(json.loads(r["details"])),
        )
        for r in decisions
    ]
    return signals, keys


async def compare_with_live(conn: asyncpg.Connection, result: ReplayResult) -> Comparison:
    signals, decisions = await live_rows(conn, result)
    live = {s.key() for s in signals} | set(decisions)
    ours = {s.key() for s in result.signals} | {decision_key(d) for d in result.decisions}
    return Comparison(len(signals), len(decisions), sorted(live - ours), sorted(ours - live))


async def store_replay(
    conn: asyncpg.Connection, replay_id: str, result: ReplayResult, comparison: Comparison
) -> None:
    """Keep a replay's output (idempotent per ``replay_id``: a re-run replaces it)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM signals.replays WHERE replay_id = $1", replay_id)
        await conn.execute(
            "INSERT INTO signals.replays (replay_id, analyzer_id, coordinator_id, exchange, "
            "symbols, timeframes, range_start, range_end, detected, coordinated, matches_live, "
            "differences) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)",
            replay_id,
            result.analyzer_id,
            result.coordinator_id,
            result.exchange,
            list(result.symbols),
            list(result.timeframes),
            result.start,
            result.end,
            len(result.signals),
            len(result.decisions),
            comparison.matches,
            json.dumps(comparison.as_dict()),
        )
        await conn.executemany(
            "INSERT INTO signals.replay_detected_signals (replay_id, analyzer_id, exchange, "
            "symbol, timeframe, ts, signal_type, price, details) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
            [
                (
                    replay_id,
                    s.analyzer_id,
                    s.exchange,
                    s.symbol,
                    s.timeframe,
                    s.ts,
                    s.signal_type,
                    s.price,
                    details_json(s.details),
                )
                for s in result.signals
            ],
        )
        await conn.executemany(
            "INSERT INTO signals.replay_coordinated_signals (replay_id, coordinator_id, "
            "exchange, symbol, decided_at, direction, decision, confidence, details) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
            [
                (
                    replay_id,
                    d.coordinator_id,
                    d.exchange,
                    d.symbol,
                    d.decided_at,
                    d.direction,
                    d.decision,
                    d.confidence,
                    details_json(d.details),
                )
                for d in result.decisions
            ],
        )
