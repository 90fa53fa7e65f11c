"""The service's hot loops: per symbol the trade watcher and the book watcher, and the clock
tick (closes bars of quiet markets, schedules REST recovery of missing trade ids), with the
checks the supervisor uses to tell a stalled watcher from a quiet market."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.errors import RetriesExhausted
from ats_pipelines.lib.timeframes import parse_timeframe
from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.emitter import TRADE_BATCH_S, Emitter
from ats_pipelines.streaming.ingest import FAR_PAST
from ats_pipelines.streaming.intake import TradeIntake
from ats_pipelines.streaming.recovery import TradeRecovery
from ats_pipelines.streaming.supervisor import Supervisor
from ats_pipelines.streaming.symbols import SymbolRegistry
from ats_pipelines.streaming.upkeep import Upkeep

log = logging.getLogger("ats_pipelines.streaming.service")
RECOVER_AFTER_S = 0.5  # a reconnect the trade watcher has not processed by then: the tick does


class StreamLoops:
    """Trade and book watchers and the clock tick of one service."""

    def __init__(
        self,
        config: StreamConfig,
        parts: tuple[SymbolRegistry, TradeIntake, Emitter, TradeRecovery, Upkeep],
        clock: ExchangeClock,
        clients: tuple[ExchangeClient, ExchangeClient | None],
        supervisor: Supervisor,
        keep: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self.config, self.clock, self.supervisor, self.keep = config, clock, supervisor, keep
        self.symbols, self.intake, self.emitter, self.recovery, self.upkeep = parts
        self.trades_client, self.books_client = clients

    # -- trades ----------------------------------------------------------------------------

    async def trades(self, symbol: str) -> None:
        p, lock = self.symbols.pipelines[symbol], self.symbols.locks[symbol]
        beat, name = self.supervisor.beat, f"trades-{symbol}"
        while True:
            try:
                # ids are checked once, by the pipeline (its tracker and aggregator)
                p.watching = True
                try:
                    trades = await self.trades_client.watch_trades(symbol, dedupe=False)
                finally:
                    p.watching = False
            except RetriesExhausted as exc:
                log.error("event=stream_trades_down symbol=%s error=%s", symbol, exc)
                await asyncio.sleep(self.config.reconnect_max_s)
                continue
            received = time.time()
            beat(name)  # progress; where the chaos tests inject (a batch in hand is lost)
            async with lock:
                reconnects = self.trades_client.stats["reconnects"]
                if p.pending_reconnect or reconnects != p.seen_reconnects:
                    await self.recovery.recover(p, trades, reconnects)
                self.intake.ingest(p, trades, received)
                await self.emitter.emit(p, received)

    async def tick(self) -> None:
        c = self.config
        while True:
            await asyncio.sleep(c.tick_s)
            self.supervisor.beat("tick")
            self.upkeep.count_reconnects()
            now_wall = time.time()
            now_ms = self.clock.now_ms()
            reconnects = self.trades_client.stats["reconnects"]
            for symbol, p in self.symbols.pipelines.items():
                if self.symbols.locks[symbol].locked() or symbol in self.symbols.recovering:
                    continue
                if len(p.trades) and now_wall - p.trades_since >= TRADE_BATCH_S:
                    await self.emitter.emit(p, now_wall)  # trades of a symbol gone quiet
                if reconnects != p.seen_reconnects and not p.pending_reconnect:
                    p.pending_reconnect, p.reconnect_noticed = True, now_wall
                if p.pending_reconnect:
                    if now_wall - p.reconnect_noticed >= RECOVER_AFTER_S:
                        self.background(symbol, lambda p=p: self.recovery.recover_later(p))
                    continue
                if p.tracker is not None and p.tracker.missing:
                    if p.tracker.overdue(now_wall, c.gap_patience_s):
                        self.background(symbol, lambda p=p: self.recovery.refill(p))
                    continue
                # the clock closes bars of a quiet market only: while trades flow they close
                # bars themselves, and a clock running ahead of a lagging stream would
                # finalise buckets whose trades are still on the way
                # ... and only while its watcher waits on the exchange: a watcher that is
                # behind (starved, stalled, restarting) leaves trades unread that a clock
                # closing their bars would make late (measured: 2,711 trades lost that way)
                if p.watching and now_wall - p.last_received >= c.quiet_s:
                    await self.emitter.emit(p, now_wall, p.agg.advance(now_ms))
                keep = p.closed_before - 4 * self._largest_tf_ms()
                if p.tainted and keep > FAR_PAST:
                    p.prune_tainted(keep)

    def _largest_tf_ms(self) -> int:
        return max(parse_timeframe(tf).ms or 31 * 86_400_000 for tf in self.config.timeframes)

    def background(self, symbol: str, make: Callable[[], Awaitable[None]]) -> None:
        """Run ``make()`` once, supervised (a coroutine factory: created inside the task, so a
        task cancelled before it starts leaves no coroutine un-awaited) with ``symbol`` marked
        recovering; a failure is logged and counted, and the clock schedules it again."""
        recovering = self.symbols.recovering
        recovering.add(symbol)

        async def run() -> None:
            try:
                await make()
            finally:
                recovering.discard(symbol)

        self.keep(self.supervisor.once(f"recover-{symbol}", "recover", run))

    def watcher_restarted(self, symbol: str) -> None:
        # the batch a failed watcher held may be lost: fetch from the last id seen, as after
        # a reconnect
        p = self.symbols.pipelines[symbol]
        p.pending_reconnect, p.reconnect_noticed = True, time.time()

    async def market_traded(self, symbol: str) -> bool:
        """The exchange has a trade of ``symbol`` newer than the last one applied (compared by
        time: REST may number its trades differently, e.g. aggregate ids)."""
        newest = await self.trades_client.fetch_trades(symbol, limit=1)
        last = self.symbols.pipelines[symbol].last_trade_ts
        stamps = [t["timestamp"] for t in newest if isinstance(t.get("timestamp"), int)]
        return bool(stamps) and (last is None or max(stamps) > last)

    async def trades_flowing(self, symbol: str) -> bool:
        """Trades of ``symbol`` arrive, so its book must be changing too."""
        entry = self.supervisor.tasks.get(f"trades-{symbol}")
        return entry is not None and time.monotonic() - entry.last_beat < self.config.stall_s

    # -- books -----------------------------------------------------------------------------

    async def book(self, symbol: str) -> None:
        assert self.books_client is not None
        tracker = self.symbols.books[symbol]
        cache = self.emitter.cache
        while True:
            try:
                book = await self.books_client.watch_order_book(symbol)
            except RetriesExhausted as exc:
                log.error("event=stream_book_down symbol=%s error=%s", symbol, exc)
                await asyncio.sleep(self.config.reconnect_max_s)
                continue
            self.supervisor.beat(f"book-{symbol}")
            tracker.update(book, self.clock.now_ms())
            if cache is not None:
                values = tracker.cache_values()
                if values is not None:
                    cache.book(symbol, values)
