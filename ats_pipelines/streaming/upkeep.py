"""The service's upkeep: checkpoints of open bars, the clock, the hot cache's open bars, stats
and the heartbeat, and the healing loop (mixed into
:class:`~ats_pipelines.streaming.service.StreamService`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ats_pipelines.db.connect import DatabaseUnavailable, connect
from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.lib.bars import Bar
from ats_pipelines.streaming import health
from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.committer import LaneThread
from ats_pipelines.streaming.config import StreamConfig, host_name
from ats_pipelines.streaming.heal import HealPlanner, HealResult, heal
from ats_pipelines.streaming.hotcache import HotCache
from ats_pipelines.streaming.ingest import FAR_PAST, SymbolPipeline
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.rows import Precision, bar_values
from ats_pipelines.streaming.runtime import GcPacer
from ats_pipelines.streaming.state import state_batch
from ats_pipelines.streaming.writer import CONNECT_TIMEOUT_S, Lane, is_transient

log = logging.getLogger("ats_pipelines.streaming.service")


class Upkeep:
    """Periodic work beside the trade and book watchers."""

    config: StreamConfig
    pipelines: dict[str, SymbolPipeline]
    precision: dict[str, Precision]
    locks: dict[str, asyncio.Lock]
    committed: dict[str, int]
    bars_lane: LaneThread
    bulk_lane: Lane
    cache: HotCache | None
    metrics: StreamMetrics
    clock: ExchangeClock
    healing: HealPlanner
    heal_totals: HealResult
    heal_passes: int
    trades_client: ExchangeClient
    started_at: datetime
    stopping: asyncio.Event
    stop_reason: str | None
    gc_pacer: GcPacer
    _reconnects_counted: dict[str, int]
    _resyncs_counted: int

    async def _emit(
        self,
        p: SymbolPipeline,
        received: float,
        advanced: list[Bar] | None = None,
        *,
        flush_trades: bool = False,
    ) -> None:
        raise NotImplementedError  # the service's

    async def _every(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await fn()

    async def _checkpoint_all(self) -> None:
        for symbol, p in self.pipelines.items():
            async with self.locks[symbol]:
                await self._emit(p, time.time(), flush_trades=True)
                if p.agg.applied or p.tracker is not None or not p.fresh:
                    await self.bars_lane.put(
                        state_batch(
                            p.exchange,
                            symbol,
                            self.config.shard,
                            p.checkpoint(),
                            p.closed_before if p.closed_before > FAR_PAST else None,
                        )
                    )

    async def _sync_clock(self) -> None:
        with contextlib.suppress(PermanentExchangeError, RetriesExhausted):
            await self.clock.sync(self.trades_client.server_time_ms)

    async def _cache_open_bars(self) -> None:
        assert self.cache is not None
        for symbol, p in self.pipelines.items():
            latest: dict[str, Bar] = {}
            for bar in p.agg.open_bars():
                latest[bar.timeframe] = bar
            for tf, bar in latest.items():
                self.cache.open_bar(symbol, tf, bar_values(bar, self.precision[symbol]))

    def stats(self) -> dict[str, Any]:
        last = max(
            (p.last_trade_ts for p in self.pipelines.values() if p.last_trade_ts is not None),
            default=None,
        )
        counts: dict[str, int] = {}
        for p in self.pipelines.values():
            for k, v in p.counts.items():
                counts[k] = counts.get(k, 0) + v
        return {
            "trades": counts,
            "last_trade_age_s": (self.clock.now_ms() - last) / 1000 if last else None,
            "reconnects": dict(self._reconnects_counted),
            "book_resyncs": self._resyncs_counted,
            "lanes": {"bars": self.bars_lane.stats(), "bulk": self.bulk_lane.stats()},
            "heal": {
                "passes": self.heal_passes,
                "inserted": self.heal_totals.inserted,
                "updated": self.heal_totals.updated,
            },
            "latency": self.metrics.summary(),
            "gc": self.gc_pacer.stats(),
            "stopping": self.stopping.is_set(),
        }

    def summary(self) -> dict[str, Any]:
        out = self.stats()
        out["shard"] = self.config.shard
        out["stop_reason"] = self.stop_reason
        return out

    async def _heartbeat(self, final: bool = False) -> None:
        c = self.config
        stats = self.stats()
        last = max(
            (p.last_trade_ts for p in self.pipelines.values() if p.last_trade_ts is not None),
            default=None,
        )
        if self.cache is not None:
            self.cache.shard(
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

    async def _heal_loop(self) -> None:
        c = self.config
        next_periodic = time.monotonic() + min(c.heal_interval_s, 5 * c.tick_s + 1.0)
        while True:
            await asyncio.sleep(min(1.0, c.heal_interval_s, max(c.tick_s, 0.05) * 4))
            periodic = time.monotonic() >= next_periodic
            if not periodic and not self.healing.requests:
                continue
            try:
                await self._heal_pass(periodic)
            except (PermanentExchangeError, RetriesExhausted) as exc:
                log.warning("event=heal_failed shard=%s error=%s", c.shard, exc)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("event=heal_postponed shard=%s error=%s", c.shard, exc)
                continue
            if periodic:
                next_periodic = time.monotonic() + c.heal_interval_s

    def _committed_to(self, symbol: str) -> int:
        """Bars of ``symbol`` opening before this are final and committed."""
        mark = self.committed.get(symbol, FAR_PAST)
        if self.bars_lane.quiet and not self.locks[symbol].locked():
            mark = max(mark, self.pipelines[symbol].closed_before)  # all emitted is committed
        return mark

    async def _heal_pass(self, periodic: bool) -> None:
        c = self.config
        committed = {symbol: self._committed_to(symbol) for symbol in c.symbols}
        coverage = {symbol: p.coverage_from for symbol, p in self.pipelines.items()}
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
                if self.cache is not None:  # the hot cache has no holes where the stream had
                    for tf, values in result.written_bars:
                        self.cache.final_bars(item.symbol, tf, [values], source="heal")
        finally:
            await conn.close()
        if periodic:
            self.heal_passes += 1
