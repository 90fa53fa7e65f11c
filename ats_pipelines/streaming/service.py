"""The streaming service: one asyncio loop owning every symbol of a shard.

Tasks: per symbol a trade watcher and a book watcher; a clock tick (closes bars of markets
quiet for ``quiet_s``, refetches missing trade ids); a book sampler; a checkpoint saver; a
heartbeat; the healer; the hot-cache flusher. Final bars go to the ``bars`` writer lane (with the
quarantine and the saved state, so they commit together); trades and book snapshots to the
``bulk`` lane.

Start: load markets (precision per symbol), sync the clock, replay spill files left by a
previous run, resume each symbol's saved state (``ops.stream_state``), then watch. A resumed
symbol first fetches the trades it missed while stopped, so a restart mid-bar loses and repeats
nothing. Stop (SIGTERM/SIGINT, ``request_stop`` or ``duration_s``): the watchers stop, open
bars stay open and their state is saved, every queue is drained (or spilled when the database is
away), and ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ccxt

from ats_pipelines.config import ConfigError
from ats_pipelines.db.connect import DatabaseUnavailable, connect
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.exchange.retry import RetryPolicy
from ats_pipelines.lib.bars import Bar
from ats_pipelines.lib.timeframes import bucket_end_ms, parse_timeframe
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.committer import LaneThread
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.heal import HealPlanner, HealResult
from ats_pipelines.streaming.hotcache import HotCache
from ats_pipelines.streaming.ingest import FAR_PAST, SymbolPipeline, TradeGapFiller
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.orderbook import BookTracker
from ats_pipelines.streaming.recovery import TradeRecovery
from ats_pipelines.streaming.rows import (
    Precision,
    bar_values,
    candles_table,
    rejections_table,
    snapshots_table,
)
from ats_pipelines.streaming.runtime import GcPacer, freeze_heap, latency_tuning
from ats_pipelines.streaming.spill import Batch
from ats_pipelines.streaming.state import load_state
from ats_pipelines.streaming.upkeep import Upkeep
from ats_pipelines.streaming.writer import Lane

log = logging.getLogger(__name__)
TRADE_BATCH_ROWS = 5_000
TRADE_BATCH_S = 0.5
RECOVER_AFTER_S = 0.5  # a reconnect the trade watcher has not processed by then: the tick does
STARTUP_DB_WAIT_S = 30.0
SHUTDOWN_FLUSH_S = 30.0


class StreamServiceError(RuntimeError):
    """The service stopped because of an error it cannot ride out (named in the message)."""


@dataclass
class BarCommit:
    """One committed bar, for latency reports: times in wall seconds, ``final_at`` exchange ms."""

    symbol: str
    timeframe: str
    ts: int
    final_at_ms: int
    received: float
    closed: float
    committed: float


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class StreamService(TradeRecovery, Upkeep):
    """``await StreamService(config).run()`` streams until stopped; see the module docstring."""

    def __init__(self, config: StreamConfig, *, install_signal_handlers: bool = False) -> None:
        self.config = config
        self.install_signal_handlers = install_signal_handlers
        self.metrics = StreamMetrics(config.shard)
        self.gc_pacer = GcPacer()
        self.clock = ExchangeClock()
        self.validator = DataValidator(
            now=lambda: datetime.fromtimestamp(
                max(time.time() * 1000, self.clock.now_ms()) / 1000, UTC
            )
        )
        self.pipelines: dict[str, SymbolPipeline] = {}
        self.books: dict[str, BookTracker] = {}
        self.precision: dict[str, Precision] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.committed: dict[str, int] = {}
        self.healing = HealPlanner(config.timeframes, config.heal_lookback_bars)
        self.heal_totals = HealResult()
        self.heal_passes = 0
        self.bar_commits: deque[BarCommit] = deque(maxlen=200_000)
        self.started_at = datetime.now(UTC)
        self.stopping = asyncio.Event()
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self._crashed = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._recovering: set[str] = set()
        self._reconnects_counted = {"trades": 0, "books": 0}
        self._resyncs_counted = 0
        self._base_ms = min(parse_timeframe(tf).ms or 60_000 for tf in config.timeframes)
        spill = Path(config.spill_dir) / _safe(config.shard)
        # bars commit from their own thread: not gated by the ingest loop's iterations
        # (committer.py). Trades stay on the loop: a second writer thread contending for the
        # GIL and the database doubled the bars' closed -> committed p50 (measured 22 vs 12 ms)
        self.bars_lane = LaneThread(self._lane("bars", spill, self._bars_committed))
        self.bulk_lane = self._lane("bulk", spill, None)
        self.cache = (
            HotCache(config.redis_url, config.label, interval_s=config.hot_cache_interval_s)
            if config.redis_url
            else None
        )
        self.trades_client = self._client()
        self.books_client = self._client() if config.watch_books else None
        self.filler = TradeGapFiller(self.trades_client, use_history=bool(config.api_key))

    def _lane(self, name: str, spill: Path, on_commit: Any) -> Lane:
        c = self.config
        return Lane(
            name,
            c.database_url,
            spill_dir=spill / name,
            metrics=self.metrics,
            queue_items=c.queue_items,
            max_pending_rows=c.max_pending_rows,
            buffer_rows=c.buffer_rows,
            retry_base_s=c.db_retry_base_s,
            retry_max_s=c.db_retry_max_s,
            on_commit=on_commit,
        )

    def _client(self) -> ExchangeClient:
        c = self.config
        # no permessage-deflate: inflating every small frame cost more CPU than anything
        # else the service does per trade (measured), and the loop's CPU is the bottleneck
        options: dict[str, Any] = {"tradesLimit": c.trades_cache}
        if not c.ws_compression:
            options["ws"] = {"compress": 0}
        exchange = build_exchange(
            c.exchange,
            api_key=c.api_key,
            secret=c.secret,
            rest_url=c.exchange_url,
            options=options,
        )
        stream_policy = RetryPolicy(
            max_attempts=c.reconnect_max_failures,
            base_delay_s=c.reconnect_base_s,
            max_delay_s=c.reconnect_max_s,
        )
        return ExchangeClient(exchange, policy=RetryPolicy(), stream_policy=stream_policy)

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            log.info("event=stream_stopping shard=%s reason=%s", self.config.shard, reason)
            self.stop_reason = reason
            self.stopping.set()

    def crash(self) -> None:
        """Stop *without* flushing or saving anything, as a killed process would (tests of
        crash recovery): what is not committed or spilled yet is lost."""
        self._crashed = True
        self.request_stop("crash")

    async def run(self) -> dict[str, Any]:
        """Stream until stopped; returns a summary. Raises StreamServiceError on a fatal error."""
        loop = asyncio.get_running_loop()
        handled: dict[signal.Signals, Any] = {}
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    previous = signal.getsignal(sig)
                    loop.add_signal_handler(sig, self.request_stop, sig.name)
                    handled[sig] = previous
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            with latency_tuning():
                await self._start()
                self.ready.set()
                await self.stopping.wait()
        except Exception as exc:
            self.error = exc
            log.exception("event=stream_start_failed shard=%s", self.config.shard)
        finally:
            await self._shutdown()
            for sig, previous in handled.items():  # give the host (Dagster, pytest) its own back
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous)
        if self.error is not None:
            raise StreamServiceError(
                f"stream {self.config.shard} stopped: {type(self.error).__name__}: {self.error}"
            ) from self.error
        return self.summary()

    async def _start(self) -> None:
        c = self.config
        if c.metrics_port is not None:
            port = self.metrics.serve(c.metrics_port)
            log.info("event=stream_metrics url=http://127.0.0.1:%s/metrics", port)
        await self._load_markets()
        await self.clock.sync(self.trades_client.server_time_ms)
        for lane in (self.bars_lane, self.bulk_lane):  # connected before the load starts
            await lane.open()
            lane.start()
        await self._resume_all()
        if self.cache is not None:
            self.cache.start()
        freeze_heap()  # before the first trade: its full collection stalls nothing
        spawn = self._spawn
        spawn(self.gc_pacer.run(), "gc")
        for symbol in c.symbols:
            spawn(self._trade_loop(symbol), f"trades-{symbol}")
            if self.books_client is not None:
                spawn(self._book_loop(symbol), f"book-{symbol}")
        spawn(self._tick_loop(), "tick")
        spawn(self._every(c.snapshot_interval_s, self._sample_books), "snapshots")
        spawn(self._every(c.checkpoint_interval_s, self._checkpoint_all), "checkpoint")
        spawn(self._every(c.heartbeat_interval_s, self._heartbeat), "heartbeat")
        spawn(self._every(c.clock_sync_s, self._sync_clock), "clock")
        spawn(self._heal_loop(), "heal")
        if self.cache is not None:
            spawn(self._every(c.open_bar_interval_s, self._cache_open_bars), "open-bars")
        if c.duration_s is not None:
            spawn(self._stop_after(c.duration_s), "duration")
        log.info(
            "event=stream_started shard=%s exchange=%s symbols=%s timeframes=%s grace_ms=%s",
            c.shard,
            c.exchange,
            ",".join(c.symbols),
            ",".join(c.timeframes),
            c.grace_ms,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self.stopping.is_set():
            return
        exc = task.exception()
        if exc is not None:
            self.error = exc
            log.error(
                "event=stream_task_failed task=%s error=%s: %s",
                task.get_name(),
                type(exc).__name__,
                exc,
            )
            self.request_stop(f"task {task.get_name()} failed")

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.request_stop(f"duration {seconds}s reached")

    async def _load_markets(self) -> None:
        try:
            markets = await self.trades_client.load_markets()
        except PermanentExchangeError as exc:
            raise ConfigError(f"exchange {self.config.exchange}: {exc}") from exc
        unknown = [s for s in self.config.symbols if s not in markets]
        if unknown:
            raise ConfigError(
                f"exchange {self.config.exchange} has no market "
                f"{', '.join(unknown)} (symbols are ccxt unified, e.g. BTC/USDT)"
            )
        mode = getattr(self.trades_client.exchange, "precisionMode", None)
        for symbol in self.config.symbols:
            self.precision[symbol] = Precision.of_market(markets[symbol], mode)

    async def _resume_all(self) -> None:
        c = self.config
        saved: dict[str, dict[str, Any] | None] = dict.fromkeys(c.symbols)
        deadline = time.monotonic() + STARTUP_DB_WAIT_S
        while True:
            try:
                conn = await connect(c.database_url, timeout=5.0)
                try:
                    for symbol in c.symbols:
                        saved[symbol] = await load_state(conn, c.label, symbol)
                finally:
                    await conn.close()
                break
            except (DatabaseUnavailable, OSError) as exc:
                if time.monotonic() > deadline:
                    log.error(
                        "event=stream_state_unavailable shard=%s error=%s: starting "
                        "fresh (the healer fills what this costs)",
                        c.shard,
                        exc,
                    )
                    break
                await asyncio.sleep(1.0)
        for symbol in c.symbols:
            p = SymbolPipeline(
                c.label,
                symbol,
                c.timeframes,
                grace_ms=c.grace_ms,
                validator=self.validator,
                dedup_window_ms=c.dedup_window_ms or self._base_ms + c.grace_ms,
                max_gap=c.max_backfill_trades,
            )
            state = saved[symbol]
            if state is not None:
                agg = state.get("aggregator", {})
                if (
                    list(agg.get("timeframes", [])) != list(p.agg.timeframes)
                    or agg.get("grace_ms") != c.grace_ms
                ):
                    log.warning(
                        "event=stream_state_ignored symbol=%s reason=timeframes or "
                        "grace changed (saved %s, grace %s)",
                        symbol,
                        agg.get("timeframes"),
                        agg.get("grace_ms"),
                    )
                else:
                    p.restore(state)
                    p.reconnect_noticed = time.time()
                    log.info(
                        "event=stream_resumed symbol=%s closed_before=%s open_buckets=%s",
                        symbol,
                        p.closed_before,
                        len(agg.get("open", [])),
                    )
                    if p.closed_before > FAR_PAST:
                        self.committed[symbol] = p.closed_before
            self.pipelines[symbol] = p
            self.locks[symbol] = asyncio.Lock()
            if c.watch_books:
                self.books[symbol] = BookTracker(c.label, symbol, c.book_levels, self.validator)

    async def _shutdown(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._crashed:
            for lane in (self.bars_lane, self.bulk_lane):
                await lane.abandon()
        elif self.pipelines and self.bars_lane.started:
            await self._checkpoint_all()  # emits what each symbol holds, then saves its state
            await self._sample_books()
        for lane in (self.bars_lane, self.bulk_lane):
            if lane.started and not self._crashed:
                await lane.close(SHUTDOWN_FLUSH_S)
        if self.pipelines and not self._crashed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._heartbeat(final=True), 5.0)
        if self.cache is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cache.close(), 5.0)
        for client in (self.trades_client, self.books_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        self.metrics.close()
        log.info(
            "event=stream_stopped shard=%s reason=%s summary=%s",
            self.config.shard,
            self.stop_reason,
            self.summary(),
        )

    # -- trades ----------------------------------------------------------------------------

    def _latest_ms(self) -> int:
        return int(
            max(time.time() * 1000, self.clock.now_ms()) + self.config.future_tolerance_s * 1000
        )

    async def _trade_loop(self, symbol: str) -> None:
        p, lock = self.pipelines[symbol], self.locks[symbol]
        while True:
            try:
                # ids are checked once, by the pipeline (its tracker and aggregator)
                trades = await self.trades_client.watch_trades(symbol, dedupe=False)
            except RetriesExhausted as exc:
                log.error("event=stream_trades_down symbol=%s error=%s", symbol, exc)
                await asyncio.sleep(self.config.reconnect_max_s)
                continue
            received = time.time()
            async with lock:
                reconnects = self.trades_client.stats["reconnects"]
                if p.pending_reconnect or reconnects != p.seen_reconnects:
                    await self._recover(p, trades, reconnects)
                self._ingest(p, trades, received)
                await self._emit(p, received)

    def _ingest(
        self,
        p: SymbolPipeline,
        trades: list[dict[str, Any]],
        received: float,
        *,
        backfill: bool = False,
    ) -> int:
        before = dict(p.counts)
        applied = p.ingest(
            trades, received, self._latest_ms(), self.metrics.receive_latencies, backfill=backfill
        )
        for status in ("applied", "duplicate", "late", "invalid"):
            delta = p.counts[status] - before[status]
            if delta:
                self.metrics.trades.labels(status=status).inc(delta)
        if p.tracker is not None and p.tracker.unfillable:
            for run in p.tracker.unfillable:
                self._give_up(
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

    # -- bars ------------------------------------------------------------------------------

    async def _emit(
        self,
        p: SymbolPipeline,
        received: float,
        advanced: list[Bar] | None = None,
        *,
        flush_trades: bool = False,
    ) -> None:
        """Hand what ``p`` produced to the writer lanes and the cache (under its lock).

        Bars go at once (latency); trades are gathered into batches of ``TRADE_BATCH_ROWS``
        or ``TRADE_BATCH_S``: one Arrow table per websocket message cost more than the
        aggregation itself at high rates.
        """
        bars = (advanced or []) + p.agg.drain()
        closed = time.time()
        rejections = p.take_rejections()
        trades = None
        if len(p.trades) and (
            flush_trades
            or len(p.trades) >= TRADE_BATCH_ROWS
            or closed - p.trades_since >= TRADE_BATCH_S
        ):
            trades = p.take_trades()
            p.trades_since = closed
        if bars:
            for bar in bars:
                self.metrics.bars.labels(timeframe=bar.timeframe).inc()
                self.metrics.observe("received_to_closed", max(0.0, closed - received))
            await self._write_bars(p, p.writable(bars), received, closed)
        if rejections:
            await self.bars_lane.put(
                Batch("ops.quarantine", rejections_table(rejections), dataset="trades")
            )
        if trades is not None:
            await self.bulk_lane.put(
                Batch("market.trades", trades.table(p.exchange, p.symbol, self.precision[p.symbol]))
            )

    async def _write_bars(
        self, p: SymbolPipeline, bars: list[Bar], received: float, closed: float
    ) -> None:
        if not bars:
            return
        precision = self.precision[p.symbol]
        values = [bar_values(b, precision) for b in bars]
        grace = p.agg.grace_ms
        timings = [
            (
                b.symbol,
                b.timeframe,
                b.ts,
                bucket_end_ms(b.ts, b.timeframe) + grace,
                received,
                closed,
            )
            for b in bars
        ]
        table = candles_table(p.exchange, p.symbol, [b.timeframe for b in bars], values, "stream")
        await self.bars_lane.put(
            Batch(
                "market.candles",
                table,
                meta=[{"symbol": p.symbol, "closed_before": p.closed_before, "timings": timings}],
            )
        )
        if self.cache is not None:
            by_tf: dict[str, list[dict[str, Any]]] = {}
            for bar, v in zip(bars, values, strict=True):
                by_tf.setdefault(bar.timeframe, []).append(v)
            for tf, vs in by_tf.items():
                self.cache.final_bars(p.symbol, tf, vs)

    def _bars_committed(self, batches: list[Batch], committed: float) -> None:
        for batch in batches:
            for meta in batch.meta:
                symbol = meta["symbol"]
                self.committed[symbol] = max(
                    self.committed.get(symbol, FAR_PAST), meta["closed_before"]
                )
                for sym, tf, ts, final_at, received, closed in meta["timings"]:
                    self.metrics.observe("closed_to_committed", max(0.0, committed - closed))
                    self.metrics.observe(
                        "final_to_committed", max(0.0, committed - self.clock.local_s(final_at))
                    )
                    self.bar_commits.append(
                        BarCommit(sym, tf, ts, final_at, received, closed, committed)
                    )

    async def _tick_loop(self) -> None:
        c = self.config
        while True:
            await asyncio.sleep(c.tick_s)
            self._count_reconnects()
            now_wall = time.time()
            now_ms = self.clock.now_ms()
            reconnects = self.trades_client.stats["reconnects"]
            for symbol, p in self.pipelines.items():
                if self.locks[symbol].locked() or symbol in self._recovering:
                    continue
                if len(p.trades) and now_wall - p.trades_since >= TRADE_BATCH_S:
                    await self._emit(p, now_wall)  # trades of a symbol gone quiet
                if reconnects != p.seen_reconnects and not p.pending_reconnect:
                    p.pending_reconnect, p.reconnect_noticed = True, now_wall
                if p.pending_reconnect:
                    if now_wall - p.reconnect_noticed >= RECOVER_AFTER_S:
                        self._background(symbol, lambda p=p: self._recover_later(p))
                    continue
                if p.tracker is not None and p.tracker.missing:
                    if p.tracker.overdue(now_wall, c.gap_patience_s):
                        self._background(symbol, lambda p=p: self._refill(p))
                    continue
                # the clock closes bars of a quiet market only: while trades flow they close
                # bars themselves, and a clock running ahead of a lagging stream would
                # finalise buckets whose trades are still on the way
                if now_wall - p.last_received >= c.quiet_s:
                    await self._emit(p, now_wall, p.agg.advance(now_ms))
                keep = p.closed_before - 4 * self._largest_tf_ms()
                if p.tainted and keep > FAR_PAST:
                    p.prune_tainted(keep)

    def _largest_tf_ms(self) -> int:
        return max(parse_timeframe(tf).ms or 31 * 86_400_000 for tf in self.config.timeframes)

    def _background(self, symbol: str, make: Any) -> None:
        """Run ``make()`` (a coroutine factory: created inside the task, so a task cancelled
        before it starts leaves no coroutine un-awaited) with ``symbol`` marked recovering."""
        self._recovering.add(symbol)

        async def run() -> None:
            try:
                await make()
            finally:
                self._recovering.discard(symbol)

        self._spawn(run(), f"recover-{symbol}")

    def _count_reconnects(self) -> None:
        for name, client in (("trades", self.trades_client), ("books", self.books_client)):
            if client is None:
                continue
            n = client.stats["reconnects"]
            if n > self._reconnects_counted[name]:
                self.metrics.reconnects.labels(stream=name).inc(n - self._reconnects_counted[name])
                self._reconnects_counted[name] = n
        if self.books_client is not None:
            n = self.books_client.stats["resyncs"]
            if n > self._resyncs_counted:
                self.metrics.book_resyncs.inc(n - self._resyncs_counted)
                self._resyncs_counted = n

    # -- books -----------------------------------------------------------------------------

    async def _book_loop(self, symbol: str) -> None:
        assert self.books_client is not None
        tracker = self.books[symbol]
        while True:
            try:
                book = await self.books_client.watch_order_book(symbol)
            except RetriesExhausted as exc:
                log.error("event=stream_book_down symbol=%s error=%s", symbol, exc)
                await asyncio.sleep(self.config.reconnect_max_s)
                continue
            except ccxt.BaseError as exc:  # a book ccxt cannot use: drop it, resubscribe
                log.warning("event=stream_book_error symbol=%s error=%s", symbol, exc)
                await asyncio.sleep(0.5)
                continue
            tracker.update(book, self.clock.now_ms())
            if self.cache is not None:
                values = tracker.cache_values()
                if values is not None:
                    self.cache.book(symbol, values)

    async def _sample_books(self) -> None:
        rows, rejections = [], []
        for tracker in self.books.values():
            row, rejection = tracker.sample()
            if row is not None:
                rows.append(row)
            if rejection is not None:
                rejections.append(rejection)
        if rows:
            await self.bulk_lane.put(Batch("market.order_book_snapshots", snapshots_table(rows)))
        if rejections:
            await self.bars_lane.put(
                Batch("ops.quarantine", rejections_table(rejections), dataset="order_book")
            )
