"""Trades into a symbol's pipeline with the service's bookkeeping: outcome counters, ids
given up on (their bars healed from klines), heal requests, the last-trade gauge."""

from __future__ import annotations

import logging
import time
from typing import Any

from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.heal import HealPlanner
from ats_pipelines.streaming.ingest import SymbolPipeline
from ats_pipelines.streaming.metrics import StreamMetrics

log = logging.getLogger("ats_pipelines.streaming.service")


class TradeIntake:
    """Applies trades (streamed or fetched) and records what could not be had."""

    def __init__(
        self,
        metrics: StreamMetrics,
        clock: ExchangeClock,
        healing: HealPlanner,
        future_tolerance_s: float,
    ) -> None:
        self.metrics, self.clock, self.healing = metrics, clock, healing
        self.future_tolerance_s = future_tolerance_s

    def latest_ms(self) -> int:
        """The latest believable exchange time of a trade: now plus the tolerance."""
        return int(max(time.time() * 1000, self.clock.now_ms()) + self.future_tolerance_s * 1000)

    def ingest(
        self,
        p: SymbolPipeline,
        trades: list[dict[str, Any]],
        received: float,
        *,
        backfill: bool = False,
    ) -> int:
        before = dict(p.counts)
        applied = p.ingest(
            trades, received, self.latest_ms(), self.metrics.receive_latencies, backfill=backfill
        )
        for status in ("applied", "duplicate", "late", "invalid"):
            delta = p.counts[status] - before[status]
            if delta:
                self.metrics.trades.labels(status=status).inc(delta)
        if p.tracker is not None and p.tracker.unfillable:
            for run in p.tracker.unfillable:
                self.give_up(
                    p,
                    run.ts_lo,
                    run.ts_hi,
                    f"gap of {run.last - run.first + 1} "
                    f"trade ids {run.first}..{run.last} exceeds max_backfill_trades",
                )
            p.tracker.unfillable.clear()
        for lo, hi in p.take_heal_wanted():
            self.healing.request(p.symbol, lo, hi)
        if p.last_trade_ts is not None:
            self.metrics.last_trade_ts.labels(symbol=p.symbol).set(p.last_trade_ts / 1000)
        return applied

    def give_up(self, p: SymbolPipeline, lo: int, hi: int, why: str) -> None:
        """Trades of ``[lo, hi]`` cannot be had: those bars come from REST klines instead."""
        log.warning(
            "event=stream_trades_lost symbol=%s from=%s to=%s reason=%s: bars "
            "overlapping it will be healed from klines",
            p.symbol,
            lo,
            hi,
            why,
        )
        p.taint(lo, hi)
