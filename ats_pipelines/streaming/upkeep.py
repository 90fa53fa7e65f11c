"""The service's upkeep: checkpoints of open bars, the clock, stats and the heartbeat, the
reconnect counters, and the healing loop (owned by
:class:`~ats_pipelines.streaming.service.StreamService`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ats_pipelines.db.connect import DatabaseUnavailable, connect
from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.streaming import health
from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.config import StreamConfig, host_name
from ats_pipelines.streaming.emitter import Emitter
from ats_pipelines.streaming.heal import HealPlanner, HealResult, heal
from ats_pipelines.streaming.ingest import FAR_PAST
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.runtime import GcPacer
from ats_pipelines.streaming.state import state_batch
from ats_pipelines.streaming.symbols import SymbolRegistry
from ats_pipelines.streaming.writer import CONNECT_TIMEOUT_S, is_transient

log = logging.getLogger("ats_pipelines.streaming.service")
CHECKPOINT_WAIT_S = 10.0  # for the trades a state covers to be committed (else: next time)


class Upkeep:
    """Periodic work beside the trade and book watchers."""

    def __init__(
        self,
        config: StreamConfig,
        symbols: SymbolRegistry,
        emitter: Emitter,
        metrics: StreamMetrics,
        clock: ExchangeClock,
        healing: HealPlanner,
        clients: tuple[ExchangeClient, ExchangeClient | None],
        gc_pacer: GcPacer,
        stopping: asyncio.Event,
    ) -> None:
        self.config, self.symbols, self.emitter = config, symbols, emitter
        self.metrics, self.clock, self.healing = metrics, clock, healing
        self.trades_client, self.books_client = clients
        self.gc_pacer, self.stopping = gc_pacer, stopping
        self.started_at = datetime.now(UTC)
        self.heal_totals = HealResult()
        self.heal_passes = 0
        self.reconnects_counted = {"trades": 0, "books": 0}
        self.resyncs_counted = 0

    async def checkpoint_all(self, final: bool = False) -> None:
        """Save each symbol's state, once the trades it covers are committed: a state saved
        ahead of them and a crash in between would claim trades nobody stored (the bulk and
        bar lanes commit independently). ``final`` (shutdown): no wait, the lanes are drained
        next."""
        bulk, states = self.emitter.bulk_lane, []
        for symbol, p in self.symbols.pipelines.items():
            async with self.symbols.locks[symbol]:
                await self.emitter.emit(p, time.time(), flush_trades=True)
                if p.agg.applied or p.tracker is not None or not p.fresh:
                    states.append(
                        state_batch(
                            p.exchange,
                            symbol,
                            self.config.shard,
                            p.checkpoint(),
                            p.closed_before if p.closed_before > FAR_PAST else None,
                        )
                    )
        if not final and not await bulk.wait_committed(bulk.accepted, CHECKPOINT_WAIT_S):
            log.info("event=stream_checkpoint_deferred reason=its trades are not committed yet")
            return
        for batch in states:
            await self.emitter.bars_lane.put(batch)

    async def sync_clock(self) -> None:
        with contextlib.suppress(PermanentExchangeError, RetriesExhausted):
            await self.clock.sync(self.trades_client.server_time_ms)

    def stats(self) -> dict[str, Any]:
        last = self.symbols.last_trade_ts()
        counts: dict[str, int] = {}
        for p in self.symbols.pipelines.values():
            for k, v in p.counts.items():
                counts[k] = counts.get(k, 0) + v
        return {
            "trades": counts,
            "last_trade_age_s": (self.clock.now_ms() - last) / 1000 if last else None,
            "reconnects": dict(self.reconnects_counted),
            "book_resyncs": self.resyncs_counted,
            "lanes": {lane.name: lane.stats() for lane in self.emitter.lanes},
            "heal": {
                "passes": self.heal_passes,
                "inserted": self.heal_totals.inserted,
                "updated": self.heal_totals.updated,
            },
            "latency": self.metrics.summary(),
            "gc": self.gc_pacer.stats(),
            "stopping": self.stopping.is_set(),
        }

    def count_reconnects(self) -> None:
        """Carry the clients' reconnect and resync counts into the metrics."""
        for name, client in (("trades", self.trades_client), ("books", self.books_client)):
            if client is None:
                continue
            n = client.stats["reconnects"]
            if n > self.reconnects_counted[name]:
                self.metrics.reconnects.labels(stream=name).inc(n - self.reconnects_counted[name])
                self.reconnects_counted[name] = n
        if self.books_client is not None:
            n = self.books_client.stats["resyncs"]
            if n > self.resyncs_counted:
                self.metrics.book_resyncs.inc(n - self.resyncs_counted)
                self.resyncs_counted = n

    async def heartbeat(self, final: bool = False) -> None:
        c = self.config
        stats = self.stats()
        last = self.symbols.last_trade_ts()
        if self.emitter.cache is not None:
            self.emitter.cache.shard(
                c.shard, {"last_beat": str(int(time.time() * 1000)), "symbols": ",".join(c.symbols)}
            )
        try:
            conn = await connect(c.database_url, timeout=CONNECT_TIMEOUT_S)
        except DatabaseUnavailable as exc:
            log.warning("event=stream_heartbeat_skipped shard=%s error=%s", c.shard, exc)
            return
        try:
            await health.beat(
                conn,
                shard=c.shard,
                exchange=c.label,
                symbols=c.symbols,
                host=host_name(),
                started_at=self.started_at,
                last_trade_ts=datetime.fromtimestamp(last / 1000, UTC) if last else None,
                stats=stats,
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("event=stream_heartbeat_failed shard=%s error=%s", c.shard, exc)
        finally:
            await conn.close()

    async def heal_loop(self, beat: Callable[[], None]) -> None:
        c = self.config
        next_periodic = time.monotonic() + min(c.heal_interval_s, 5 * c.tick_s + 1.0)
        while True:
            await asyncio.sleep(min(1.0, c.heal_interval_s, max(c.tick_s, 0.05) * 4))
            beat()
            periodic = time.monotonic() >= next_periodic
            if not periodic and not self.healing.requests:
                continue
            try:
                await self.heal_pass(periodic)
            except (PermanentExchangeError, RetriesExhausted) as exc:
                log.warning("event=heal_failed shard=%s error=%s", c.shard, exc)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("event=heal_postponed shard=%s error=%s", c.shard, exc)
                continue
            if periodic:
                next_periodic = time.monotonic() + c.heal_interval_s

    async def heal_pass(self, periodic: bool) -> None:
        c = self.config
        quiet = self.emitter.bars_lane.quiet
        committed = {symbol: self.symbols.committed_to(symbol, quiet) for symbol in c.symbols}
        coverage = {symbol: p.coverage_from for symbol, p in self.symbols.pipelines.items()}
        work = self.healing.plan(committed, coverage, periodic)
        if not work:
            return
        conn = await connect(c.database_url, timeout=CONNECT_TIMEOUT_S)
        try:
            for item in work:
                result = await heal(
                    conn,
                    self.trades_client,
                    exchange=c.label,
                    symbol=item.symbol,
                    windows=item.windows,
                )
                self.healing.done(item)  # only now: a failed pass is planned again
                self.heal_totals.merge(result)
                for action in ("inserted", "updated"):
                    n = sum(getattr(result, action).values())
                    if n:
                        self.metrics.heal_rows.labels(action=action).inc(n)
                cache = self.emitter.cache
                if cache is not None:  # the hot cache has no holes where the stream had
                    for tf, values in result.written_bars:
                        cache.final_bars(item.symbol, tf, [values], source="heal")
        finally:
            await conn.close()
        if periodic:
            self.heal_passes += 1
