"""Trades of one symbol into the bar aggregator, with nothing lost across disconnects.

* Every trade is validated (``lib.validation`` rules); a bad one goes to quarantine.
* Binance-style integer trade ids are consecutive per symbol, so :class:`IdTracker` knows
  which ids it has not seen: a reordered trade fills its hole a moment later, a disconnect or a
  client that fell behind leaves a run of missing ids. Those are fetched from REST
  (``gapfill.TradeGapFiller``) and applied like streamed trades — before their bars are
  final: a gap holds its buckets open (``BarAggregator.hold``) however far later trades move
  the watermark, and the clock stays paused while ids are missing or a reconnect is
  unprocessed. A run that cannot be fetched (too long, or ids REST does not give one by one)
  *taints* its time range: bars overlapping it are not written from the stream and the healer
  fills them from REST klines instead. A fresh start taints everything before its
  first trade the same way (the first bars of every timeframe are partial).
* Exchanges whose trade ids are not consecutive integers taint the interval of a disconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ats_pipelines.lib.bars import APPLIED, DUPLICATE, AggregatorState, Bar, BarAggregator
from ats_pipelines.lib.timeframes import bucket_end_ms, floor_ms
from ats_pipelines.lib.validation import DataValidator, Violation
from ats_pipelines.streaming.rows import Rejection, TradeColumns

log = logging.getLogger(__name__)
FAR_PAST = -(2**62)


@dataclass
class MissingRun:
    """Trade ids ``first..last`` not seen; their times lie in ``[ts_lo, ts_hi]``."""

    first: int
    last: int
    ts_lo: int
    ts_hi: int
    noticed: float  # wall seconds

    def to_list(self) -> list[Any]:
        return [self.first, self.last, self.ts_lo, self.ts_hi]


class IdTracker:
    """Which consecutive integer trade ids of one symbol were seen."""

    def __init__(
        self,
        hi: int | None = None,
        hi_ts: int | None = None,
        runs: Sequence[Sequence[int]] = (),
        missing: Sequence[int] = (),
    ) -> None:
        self.hi, self.hi_ts = hi, hi_ts
        self.missing: set[int] = set(missing)
        self.runs: list[MissingRun] = [MissingRun(*r[:4], noticed=0.0) for r in runs]
        self.unfillable: list[MissingRun] = []  # gaps too long to track, for the caller
        self.on_gap: Callable[[int], None] | None = None  # called with a new run's ts_lo

    def see(self, tid: int, ts: int, now: float, max_gap: int) -> bool:
        """Record ``tid``; True when it was not seen before."""
        hi = self.hi
        if hi is None or tid == hi + 1:
            self.hi, self.hi_ts = tid, ts
            return True
        if tid > hi:
            run = MissingRun(hi + 1, tid - 1, self.hi_ts if self.hi_ts is not None else ts, ts, now)
            if tid - hi - 1 > max_gap:
                self.unfillable.append(run)
            else:
                self.missing.update(range(hi + 1, tid))
                self.runs.append(run)
                if self.on_gap is not None:
                    self.on_gap(run.ts_lo)
            self.hi, self.hi_ts = tid, ts
            return True
        if tid in self.missing:
            self.missing.discard(tid)
            return True
        return False

    @property
    def floor(self) -> int | None:
        """Every id up to this one has been seen (or given up on)."""
        if self.missing:
            return min(self.missing) - 1
        return self.hi

    def prune(self) -> None:
        missing = self.missing
        self.runs = [r for r in self.runs if any(i in missing for i in range(r.first, r.last + 1))]

    def overdue(self, now: float, patience_s: float) -> list[MissingRun]:
        self.prune()
        return [r for r in self.runs if now - r.noticed >= patience_s]

    def give_up(self, run: MissingRun) -> MissingRun:
        """Stop waiting for the ids of ``run`` still missing; returns the run."""
        self.missing.difference_update(range(run.first, run.last + 1))
        self.prune()
        return run

    def to_dict(self) -> dict[str, Any]:
        return {
            "hi": self.hi,
            "hi_ts": self.hi_ts,
            "missing": sorted(self.missing),
            "runs": [r.to_list() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdTracker:
        return cls(data.get("hi"), data.get("hi_ts"), data.get("runs", ()), data.get("missing", ()))


@dataclass
class Emitted:
    """What one step produced for the writer and the cache."""

    bars: list[Bar] = field(default_factory=list)
    received: float = 0.0  # wall time the finalising message arrived
    closed: float = 0.0  # wall time the bars left the aggregator


class SymbolPipeline:
    """The live state of one symbol: aggregator, id tracker, tainted intervals, buffers."""

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframes: Sequence[str],
        *,
        grace_ms: int,
        validator: DataValidator,
        dedup_window_ms: int | None = None,
        max_gap: int = 200_000,
    ) -> None:
        self.exchange, self.symbol = exchange, symbol
        self.validator = validator
        self.max_gap = max_gap
        self.agg = BarAggregator(
            exchange, symbol, timeframes, grace_ms=grace_ms, dedup_window_ms=dedup_window_ms
        )
        self.tracker: IdTracker | None = None
        self.integer_ids: bool | None = None
        self.tainted: list[tuple[int, int]] = []
        self.fresh = True  # no resumed state: everything before the first trade is partial
        self.last_trade_ts: int | None = None
        self.last_received = 0.0  # wall time of the latest streamed trade applied
        self.watching = False  # the trade watcher waits on the exchange (has read all it got)
        self.coverage_from: int | None = None  # exchange time of the first trade ever applied
        self.trades = TradeColumns()
        self.trades_since = 0.0  # wall time trades were last handed to the writer
        self.rejections: list[Rejection] = []
        self.heal_wanted: list[tuple[int, int]] = []
        self.pending_reconnect = False
        self.reconnect_noticed = 0.0
        self.seen_reconnects = 0
        self.counts = {"applied": 0, "duplicate": 0, "late": 0, "invalid": 0, "backfilled": 0}

    # -- state -----------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able state; with integer ids, seen-id sets shrink to everything above the
        floor (all ids at or below it were processed)."""
        state = self.agg.state()
        tracker = self.tracker
        if tracker is not None and tracker.floor is not None:
            floor = tracker.floor
            for bucket in state.open:
                if bucket.timeframe == self.agg.base:
                    bucket.seen_ids = [i for i in bucket.seen_ids if int(i) > floor]
                    if bucket.id_floor is None or int(bucket.id_floor) < floor:
                        bucket.id_floor = str(floor)
            state.recent_ids = [
                (b, [i for i in ids if int(i) > floor]) for b, ids in state.recent_ids
            ]
        return {
            "version": 1,
            "aggregator": state.to_dict(),
            "tracker": tracker.to_dict() if tracker is not None else None,
            "integer_ids": self.integer_ids,
            "tainted": [list(t) for t in self.tainted],
            "fresh": self.fresh,
            "last_trade_ts": self.last_trade_ts,
            "coverage_from": self.coverage_from,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.agg = BarAggregator.from_state(AggregatorState.from_dict(data["aggregator"]))
        tracker = data.get("tracker")
        self.tracker = IdTracker.from_dict(tracker) if tracker is not None else None
        if self.tracker is not None:
            self.tracker.on_gap = self._gap_opened
            self.sync_hold()
        self.integer_ids = data.get("integer_ids")
        self.tainted = [(int(a), int(b)) for a, b in data.get("tainted", [])]
        self.fresh = bool(data.get("fresh", False))
        self.last_trade_ts = data.get("last_trade_ts")
        self.coverage_from = data.get("coverage_from")
        self.pending_reconnect = True  # the stream resumes after a gap: fetch it first

    @property
    def closed_before(self) -> int:
        """Base buckets opening before this are final (emitted or about to be drained)."""
        horizon = self.agg.watermark - self.agg.grace_ms
        closed = floor_ms(horizon, self.agg.base) if horizon > FAR_PAST else FAR_PAST
        held = self.agg.held_from
        return closed if held is None else min(closed, held)

    def _gap_opened(self, ts_lo: int) -> None:
        # trades with ids in the gap lie at or after ts_lo: keep their buckets open until they
        # are fetched or given up, however far later trades move the watermark (a stalled
        # consumer otherwise finalises those bars and the fetched trades arrive "late")
        held = self.agg.held_from
        if held is None or ts_lo < held:
            self.agg.hold(ts_lo)

    def sync_hold(self) -> None:
        """Hold bars open from the earliest run of ids still missing; release when none is."""
        tracker = self.tracker
        if self.agg.held_from is None and not (tracker and tracker.missing):
            return
        lo = None
        if tracker is not None and tracker.missing:
            tracker.prune()
            lo = min((r.ts_lo for r in tracker.runs), default=None)
        self.agg.hold(lo)

    # -- trades ----------------------------------------------------------------------------

    def ingest(
        self,
        trades: Sequence[dict[str, Any]],
        received: float,
        latest_ms: int,
        observe: Any = None,
        *,
        backfill: bool = False,
    ) -> int:
        """Validate and apply ``trades``; returns how many were applied. ``latest_ms`` is the
        latest believable exchange time (now + tolerance); ``observe`` gets the streamed
        trades' receive latencies (seconds) as one list."""
        agg_on_trade = self.agg.on_trade
        tracker = self.tracker
        applied = 0
        latencies: list[float] = []
        for t in trades:
            ts, price, amount, side, tid = (
                t.get("timestamp"),
                t.get("price"),
                t.get("amount"),
                t.get("side"),
                t.get("id"),
            )
            if not (
                type(ts) is int
                and 1_230_940_800_000 <= ts <= latest_ms
                and isinstance(price, float | int)
                and price > 0
                and price != float("inf")
                and isinstance(amount, float | int)
                and 0 < amount != float("inf")
                and side in ("buy", "sell", None)
                and tid
            ):
                self._reject(t, ts, price, amount, side, tid, latest_ms=latest_ms)
                continue
            tid = str(tid)
            if self.integer_ids is None:
                self.integer_ids = tid.isdigit() and not (len(tid) > 1 and tid[0] == "0")
                if self.integer_ids:
                    self.tracker = tracker = IdTracker()
                    tracker.on_gap = self._gap_opened
            if tracker is not None:
                if not tid.isdigit():
                    self._reject(
                        t,
                        ts,
                        price,
                        amount,
                        side,
                        tid,
                        rule="trade.id_sequence",
                        reason=f"trade id {tid!r} is not an integer like the symbol's earlier ids",
                    )
                    continue
                if not tracker.see(int(tid), ts, received, self.max_gap):
                    self.counts["duplicate"] += 1
                    continue
            status = agg_on_trade(ts, float(price), float(amount), side, tid)
            if status == APPLIED:
                applied += 1
                self.trades.add(ts, tid, float(price), float(amount), side, received)
                if self.last_trade_ts is None or ts > self.last_trade_ts:
                    self.last_trade_ts = ts
                if self.fresh:  # the bars holding the first trade are partial: heal them
                    self.fresh = False
                    self.tainted.append((FAR_PAST, ts))
                    self.heal_wanted.append((ts, ts))
                    if self.coverage_from is None:
                        self.coverage_from = ts
                latencies.append(received - ts / 1000)
            elif status == DUPLICATE:
                self.counts["duplicate"] += 1
        self.counts["applied"] += applied
        if applied and not backfill:
            self.last_received = received
            if observe is not None:
                observe(latencies)
        if backfill:
            self.counts["backfilled"] += applied
        if tracker is not None:
            self.sync_hold()
        late_ts: list[int] = []
        for late in self.agg.drain_late():
            # A new trade (its id passed the tracker) for a bar already final: the trade is
            # kept (nothing the exchange reported is lost) and the bar is healed from the
            # exchange's kline. A feed that lags the clock (a starved or slow exchange
            # connection while the watcher waits) delivers such trades.
            self.counts["late"] += 1
            self.trades.add(late.ts, late.trade_id, late.price, late.amount, late.side, received)
            late_ts.append(late.ts)
        if late_ts:
            self.heal_wanted.append((min(late_ts), max(late_ts)))
            log.warning(
                "event=stream_late_trades symbol=%s count=%s from=%s to=%s: stored, their "
                "bars will be healed from klines",
                self.symbol,
                len(late_ts),
                min(late_ts),
                max(late_ts),
            )
        return applied

    def _reject(
        self,
        t: dict[str, Any],
        ts: Any,
        price: Any,
        amount: Any,
        side: Any,
        tid: Any,
        rule: str | None = None,
        reason: str | None = None,
        latest_ms: int | None = None,
    ) -> None:
        location = f"stream {self.exchange} {self.symbol} trade {tid!r}"
        if rule is None:
            ts_ms = ts if type(ts) is int else None
            violations = self.validator.check_trade(
                ts_ms,
                _num(price),
                _num(amount),
                side if isinstance(side, str) else None,
                str(tid) if tid not in (None, "") else None,
                location=location,
            )
            if ts is not None and ts_ms is None:
                violations.insert(
                    0,
                    _violation("trade.ts_missing", f"{location}: timestamp {ts!r} is not epoch ms"),
                )
            if (
                not violations and ts_ms is not None and latest_ms is not None and ts_ms > latest_ms
            ):  # the exchange clock runs ahead of the wall clock
                violations = [
                    _violation(
                        "trade.ts_future",
                        f"{location}: ts {ts_ms} is after "
                        f"the exchange's now + tolerance ({latest_ms})",
                    )
                ]
            if not violations:  # e.g. an id of the wrong type: the validator's id rule
                violations = [_violation("trade.id_missing", f"{location}: bad id {tid!r}")]
            rule, reason = violations[0].rule, "; ".join(v.reason for v in violations)
        self.counts["invalid"] += 1
        payload = {k: t.get(k) for k in ("timestamp", "price", "amount", "side", "id")}
        self.rejections.append(
            Rejection(
                rule,
                reason or rule,
                location,
                self.exchange,
                self.symbol,
                ts if type(ts) is int else None,
                payload,
            )
        )

    def take_trades(self) -> TradeColumns:
        trades, self.trades = self.trades, TradeColumns()
        return trades

    def take_rejections(self) -> list[Rejection]:
        out, self.rejections = self.rejections, []
        return out

    # -- bars ------------------------------------------------------------------------------

    def writable(self, bars: Sequence[Bar]) -> list[Bar]:
        """Bars not overlapping a tainted interval (those come from the healer)."""
        if not self.tainted:
            return list(bars)
        out = []
        for bar in bars:
            end = bucket_end_ms(bar.ts, bar.timeframe)
            if not any(lo < end and bar.ts <= hi for lo, hi in self.tainted):
                out.append(bar)
        return out

    def taint(self, lo: int, hi: int) -> None:
        """Bars overlapping ``[lo, hi]`` are not written from the stream; ask for healing."""
        self.tainted.append((lo, hi))
        self.heal_wanted.append((lo, hi))

    def take_heal_wanted(self) -> list[tuple[int, int]]:
        out, self.heal_wanted = self.heal_wanted, []
        return out

    def prune_tainted(self, keep_after: int) -> None:
        self.tainted = [(lo, hi) for lo, hi in self.tainted if hi >= keep_after]

    def may_advance(self) -> bool:
        """The clock may finalise bars: no reconnect unprocessed, no trade id missing."""
        return not self.pending_reconnect and not (self.tracker and self.tracker.missing)


def _num(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _violation(rule: str, reason: str) -> Violation:
    return Violation(rule, reason)
