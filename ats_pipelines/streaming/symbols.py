"""The symbols one service streams: per symbol its pipeline (aggregator, id tracker), book
tracker, price/amount precision, lock and commit mark, built once at start from the saved
state."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.ingest import FAR_PAST, SymbolPipeline
from ats_pipelines.streaming.orderbook import BookTracker
from ats_pipelines.streaming.rows import Precision

log = logging.getLogger("ats_pipelines.streaming.service")


@dataclass
class SymbolRegistry:
    """Per-symbol state of the service. ``locks[s]`` serialises everything that touches
    ``pipelines[s]`` across await points (watcher, clock, recovery, checkpoint);
    ``recovering`` holds symbols whose REST recovery runs in the background."""

    pipelines: dict[str, SymbolPipeline] = field(default_factory=dict)
    books: dict[str, BookTracker] = field(default_factory=dict)
    precision: dict[str, Precision] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    recovering: set[str] = field(default_factory=set)

    def build(
        self,
        config: StreamConfig,
        validator: DataValidator,
        saved: dict[str, dict[str, Any] | None],
        base_ms: int,
    ) -> None:
        """One pipeline per symbol, resumed from its saved state when that still fits."""
        c = config
        for symbol in c.symbols:
            p = SymbolPipeline(
                c.label,
                symbol,
                c.timeframes,
                grace_ms=c.grace_ms,
                validator=validator,
                dedup_window_ms=c.dedup_window_ms or base_ms + c.grace_ms,
                max_gap=c.max_backfill_trades,
            )
            state = saved.get(symbol)
            if state is not None:
                self._resume(p, state, c.grace_ms)
            self.pipelines[symbol] = p
            self.locks[symbol] = asyncio.Lock()
            if c.watch_books:
                self.books[symbol] = BookTracker(c.label, symbol, c.book_levels, validator)

    def _resume(self, p: SymbolPipeline, state: dict[str, Any], grace_ms: int) -> None:
        agg = state.get("aggregator", {})
        if (
            list(agg.get("timeframes", [])) != list(p.agg.timeframes)
            or agg.get("grace_ms") != grace_ms
        ):
            log.warning(
                "event=stream_state_ignored symbol=%s reason=timeframes or "
                "grace changed (saved %s, grace %s)",
                p.symbol,
                agg.get("timeframes"),
                agg.get("grace_ms"),
            )
            return
        p.restore(state)
        p.reconnect_noticed = time.time()
        log.info(
            "event=stream_resumed symbol=%s closed_before=%s open_buckets=%s",
            p.symbol,
            p.closed_before,
            len(agg.get("open", [])),
        )
        if p.closed_before > FAR_PAST:
            self.committed[p.symbol] = p.closed_before

    def mark_committed(self, symbol: str, closed_before: int) -> None:
        self.committed[symbol] = max(self.committed.get(symbol, FAR_PAST), closed_before)

    def committed_to(self, symbol: str, lane_quiet: bool) -> int:
        """Bars of ``symbol`` opening before this are final and committed (``lane_quiet``:
        the bar lane holds nothing uncommitted)."""
        mark = self.committed.get(symbol, FAR_PAST)
        if lane_quiet and not self.locks[symbol].locked():
            mark = max(mark, self.pipelines[symbol].closed_before)  # all emitted is committed
        return mark

    def last_trade_ts(self) -> int | None:
        """Exchange time of the latest trade applied for any symbol."""
        return max(
            (p.last_trade_ts for p in self.pipelines.values() if p.last_trade_ts is not None),
            default=None,
        )
