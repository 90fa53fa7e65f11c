"""The coordinator: combines the analyzers' signals across timeframes into one decision.

**When.** A signal becomes known when its bar closes, at ``T = ts + timeframe``. The coordinator
decides at every such ``T`` (per exchange and symbol) of a signal from one of its timeframes —
but only once every timeframe it combines is *final* up to ``T``: timeframe ``B``'s analyzer
has processed every ``B`` bar that closed by ``T``, i.e. its watermark (newest processed bar's
open time) is ``>= floor(T, B) - B``. Until then a later-arriving 1h signal could still change a
decision, so the signal waits. A decision is thus a pure function of the stored signals, which
is what lets a replay reproduce it.

**What.** Of the signals whose ``T`` lies in ``(decision time - window, decision time]``, each
timeframe votes with its latest one (``uptrendStart`` → long, ``downtrendStart`` → short):

* ``confluence`` — two or more timeframes, all the same direction: that direction, with
  confidence ``1 - Π(1 - w_tf)`` over the voting timeframes' weights (higher than any alone);
* ``single`` — one timeframe voted: its direction, confidence ``w_tf``;
* ``conflict`` — opposite directions: they **cancel**; the decision is ``flat`` with confidence
  0, the two sides' strengths kept in ``details``. (A later signal in the window resolves it.)

One row per (coordinator, exchange, symbol, decision time) in ``signals.coordinated_signals``,
a ``event=coordinated_signal`` log line per new decision; ``signals.latest_coordinated_signals``
is the last decision per symbol.

**Exactly once.** ``coordinator_watermarks.last_signal_id`` is the highest id below which every
signal is decided (or irrelevant). A run decides every decidable pending signal, inserts with
``ON CONFLICT DO NOTHING`` and moves the watermark up to the first signal still waiting — all in
one transaction under the watermark row's lock. Ids become visible in order (see
``analyzer.WRITER_LOCK``), so the watermark never passes a signal not yet committed.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from ats_pipelines.lib.timeframes import floor_datetime, sort_timeframes, to_timedelta
from ats_pipelines.signals.analyzer import details_json
from ats_pipelines.signals.config import CoordinatorRules
from ats_pipelines.signals.trend import UPTREND_START

log = logging.getLogger(__name__)

RULE = "confluence_v1"
CONFLUENCE, SINGLE, CONFLICT = "confluence", "single", "conflict"


@dataclass(frozen=True)
class SignalRef:
    """A detected signal as the coordinator sees it (``id`` is None outside the live tables)."""

    exchange: str
    symbol: str
    timeframe: str
    ts: datetime
    signal_type: str
    price: float
    id: int | None = None

    @property
    def known_at(self) -> datetime:
        """When the signal exists: the close of its bar."""
        return self.ts + to_timedelta(self.timeframe)

    @property
    def direction(self) -> str:
        return "long" if self.signal_type == UPTREND_START else "short"

    def evidence(self) -> dict[str, Any]:
        return {
            "ts": self.ts.isoformat(),
            "signal_type": self.signal_type,
            "price": self.price,
            "direction": self.direction,
        }


@dataclass(frozen=True)
class Decision:
    coordinator_id: str
    exchange: str
    symbol: str
    decided_at: datetime
    direction: str
    decision: str
    confidence: float
    sources: tuple[SignalRef, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def source_ids(self) -> list[int]:
        return [s.id for s in self.sources if s.id is not None]


def _noisy_or(weights: Iterable[float]) -> float:
    return 1.0 - math.prod(1.0 - w for w in weights)


def decide(signals: Iterable[SignalRef], at: datetime, rules: CoordinatorRules) -> Decision:
    """The decision at ``at`` from one symbol's signals (those outside the window, after ``at``
    or of other timeframes are ignored). Raises if no signal in the window is known at ``at``."""
    signals = list(signals)
    start = at - rules.window
    latest: dict[str, SignalRef] = {}
    for s in signals:
        if s.timeframe in rules.timeframes and start < s.known_at <= at:
            current = latest.get(s.timeframe)
            if current is None or (s.known_at, s.signal_type) > (
                current.known_at,
                current.signal_type,
            ):
                latest[s.timeframe] = s
    if not any(s.known_at == at for s in latest.values()):
        raise ValueError(f"no signal becomes known at {at.isoformat()}: nothing to decide")
    first = next(iter(latest.values()))
    votes = {tf: latest[tf] for tf in sort_timeframes(list(latest))}
    strength = {
        d: _noisy_or(rules.weights[tf] for tf, s in votes.items() if s.direction == d)
        for d in ("long", "short")
    }
    directions = {s.direction for s in votes.values()}
    if len(directions) > 1:
        decision, direction, confidence = CONFLICT, "flat", 0.0
    else:
        direction = directions.pop()
        decision = CONFLUENCE if len(votes) > 1 else SINGLE
        confidence = strength[direction]
    details = {
        "rule": RULE,
        "window": str(rules.window),
        "votes": {tf: s.evidence() for tf, s in votes.items()},
        "weights": {tf: rules.weights[tf] for tf in votes},
        "strength": strength,
    }
    return Decision(
        rules.coordinator_id,
        first.exchange,
        first.symbol,
        at,
        direction,
        decision,
        confidence,
        tuple(votes.values()),
        details,
    )


def replay_decisions(signals: Iterable[SignalRef], rules: CoordinatorRules) -> list[Decision]:
    """Every decision over a set of signals (any symbols), as the live path makes them."""
    by_symbol: dict[tuple[str, str], list[SignalRef]] = defaultdict(list)
    for s in signals:
        if s.timeframe in rules.timeframes:
            by_symbol[(s.exchange, s.symbol)].append(s)
    out = []
    for key in sorted(by_symbol):
        group = by_symbol[key]
        for at in sorted({s.known_at for s in group}):
            out.append(decide(group, at, rules))
    return out


def final_up_to(
    watermarks: dict[str, datetime | None], at: datetime, timeframes: Iterable[str]
) -> bool:
    """Whether every timeframe's analyzer has processed each bar that closed by ``at``."""
    for tf in timeframes:
        mark = watermarks.get(tf)
        if mark is None or mark < floor_datetime(at, tf) - to_timedelta(tf):
            return False
    return True


# --- the live path ------------------------------------------------------------------------


@dataclass
class CoordinatorRunResult:
    coordinator_id: str
    watermark_from: int
    watermark_to: int
    pending: int = 0  # relevant signals seen after the watermark
    waiting: int = 0  # of those, not decidable yet
    decisions: list[Decision] = field(default_factory=list)  # newly written


@dataclass(frozen=True)
class Backlog:
    """What the sensor looks at: decidable signals after the watermark."""

    last_signal_id: int
    newest_id: int | None
    decidable: int
    waiting: int

    def run_key(self, coordinator_id: str) -> str:
        return f"coordinator:{coordinator_id}:{self.last_signal_id}:{self.decidable}"


_PENDING_SQL = """
SELECT id, analyzer_id, exchange, symbol, timeframe, ts, signal_type, price
FROM signals.detected_signals WHERE id > $1 ORDER BY id
"""

_WATERMARKS_SQL = """
SELECT exchange, symbol, timeframe, last_processed_ts FROM signals.analyzer_watermarks
WHERE analyzer_id = $1 AND timeframe = ANY($2::text[])
  AND (exchange, symbol) IN (SELECT * FROM unnest($3::text[], $4::text[]))
"""

_WINDOW_SQL = """
SELECT id, exchange, symbol, timeframe, ts, signal_type, price FROM signals.detected_signals
WHERE analyzer_id = $1 AND exchange = $2 AND symbol = $3 AND timeframe = ANY($4::text[])
  AND ts > $5 AND ts <= $6
"""

_DECISION_SQL = """
INSERT INTO signals.coordinated_signals (coordinator_id, exchange, symbol, decided_at, direction,
    decision, confidence, source_signal_ids, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT ON CONSTRAINT coordinated_signals_natural_key DO NOTHING
RETURNING id
"""


def _ref(row: asyncpg.Record) -> SignalRef:
    return SignalRef(
        row["exchange"],
        row["symbol"],
        row["timeframe"],
        row["ts"],
        row["signal_type"],
        row["price"],
        row["id"],
    )


async def _triage(
    conn: asyncpg.Connection, analyzer_id: str, rules: CoordinatorRules, last_id: int
) -> tuple[list[SignalRef], list[SignalRef], int | None]:
    """Pending relevant signals split into (decidable, waiting), and the newest id seen."""
    rows = await conn.fetch(_PENDING_SQL, last_id)
    newest = rows[-1]["id"] if rows else None
    relevant = [
        _ref(r)
        for r in rows
        if r["analyzer_id"] == analyzer_id and r["timeframe"] in rules.timeframes
    ]
    pairs = sorted({(s.exchange, s.symbol) for s in relevant})
    marks: dict[tuple[str, str], dict[str, datetime | None]] = defaultdict(dict)
    if pairs:
        for r in await conn.fetch(
            _WATERMARKS_SQL,
            analyzer_id,
            list(rules.timeframes),
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        ):
            marks[(r["exchange"], r["symbol"])][r["timeframe"]] = r["last_processed_ts"]
    decidable, waiting = [], []
    for s in relevant:
        ok = final_up_to(marks[(s.exchange, s.symbol)], s.known_at, rules.timeframes)
        (decidable if ok else waiting).append(s)
    return decidable, waiting, newest


async def _lock_watermark(conn: asyncpg.Connection, coordinator_id: str) -> int:
    await conn.execute(
        "INSERT INTO signals.coordinator_watermarks (coordinator_id, last_signal_id) "
        "VALUES ($1, 0) ON CONFLICT (coordinator_id) DO NOTHING",
        coordinator_id,
    )
    last_id = await conn.fetchval(
        "SELECT last_signal_id FROM signals.coordinator_watermarks WHERE coordinator_id = $1 "
        "FOR UPDATE",
        coordinator_id,
    )
    assert last_id is not None
    return int(last_id)


async def backlog(conn: asyncpg.Connection, analyzer_id: str, rules: CoordinatorRules) -> Backlog:
    last_id = (
        await conn.fetchval(
            "SELECT last_signal_id FROM signals.coordinator_watermarks WHERE coordinator_id = $1",
            rules.coordinator_id,
        )
        or 0
    )
    decidable, waiting, newest = await _triage(conn, analyzer_id, rules, last_id)
    return Backlog(last_id, newest, len(decidable), len(waiting))


async def _window(
    conn: asyncpg.Connection,
    analyzer_id: str,
    rules: CoordinatorRules,
    exchange: str,
    symbol: str,
    at: datetime,
) -> list[SignalRef]:
    longest = max(to_timedelta(tf) for tf in rules.timeframes)
    rows = await conn.fetch(
        _WINDOW_SQL,
        analyzer_id,
        exchange,
        symbol,
        list(rules.timeframes),
        at - rules.window - longest,
        at,
    )
    return [_ref(r) for r in rows]


def _log(decision: Decision) -> None:
    log.info(
        "event=coordinated_signal coordinator=%s exchange=%s symbol=%s decided_at=%s "
        "decision=%s direction=%s confidence=%.4f sources=%s",
        decision.coordinator_id,
        decision.exchange,
        decision.symbol,
        decision.decided_at.isoformat(),
        decision.decision,
        decision.direction,
        decision.confidence,
        ",".join(f"{s.timeframe}@{s.ts.isoformat()}" for s in decision.sources),
    )


async def run_coordinator(
    conn: asyncpg.Connection,
    analyzer_id: str,
    rules: CoordinatorRules,
    *,
    before_commit: Callable[[CoordinatorRunResult], Awaitable[None]] | None = None,
) -> CoordinatorRunResult:
    """Decide every decidable pending signal and move the watermark, in one transaction."""
    async with conn.transaction():
        last_id = await _lock_watermark(conn, rules.coordinator_id)
        decidable, waiting, newest = await _triage(conn, analyzer_id, rules, last_id)
        moments = sorted({(s.exchange, s.symbol, s.known_at) for s in decidable})
        result = CoordinatorRunResult(
            rules.coordinator_id, last_id, last_id, len(decidable) + len(waiting), len(waiting)
        )
        for exchange, symbol, at in moments:
            decision = decide(
                await _window(conn, analyzer_id, rules, exchange, symbol, at), at, rules
            )
            row = await conn.fetchrow(
                _DECISION_SQL,
                decision.coordinator_id,
                exchange,
                symbol,
                at,
                decision.direction,
                decision.decision,
                decision.confidence,
                decision.source_ids,
                details_json(decision.details),
            )
            if row is not None:
                result.decisions.append(decision)
        if waiting:
            result.watermark_to = min(s.id for s in waiting if s.id is not None) - 1
        elif newest is not None:
            result.watermark_to = newest
        result.watermark_to = max(result.watermark_to, last_id)
        await conn.execute(
            "UPDATE signals.coordinator_watermarks SET last_signal_id = $2, updated_at = now() "
            "WHERE coordinator_id = $1",
            rules.coordinator_id,
            result.watermark_to,
        )
        if before_commit is not None:
            await before_commit(result)
    for decision in result.decisions:
        _log(decision)
    log.info(
        "event=coordinator_run coordinator=%s decisions=%d pending=%d waiting=%d "
        "watermark_from=%d watermark_to=%d",
        rules.coordinator_id,
        len(result.decisions),
        result.pending,
        result.waiting,
        result.watermark_from,
        result.watermark_to,
    )
    return result
