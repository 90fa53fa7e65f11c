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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ats_pipelines.config import ConfigError
from ats_pipelines.db.connect import DatabaseUnavailable, connect
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.exchange.errors import PermanentExchangeError
from ats_pipelines.exchange.retry import RetryPolicy
from ats_pipelines.lib.timeframes import parse_timeframe
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.streaming.clock import ExchangeClock
from ats_pipelines.streaming.commits import BarCommit
from ats_pipelines.streaming.committer import LaneThread
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.emitter import Emitter
from ats_pipelines.streaming.gapfill import TradeGapFiller
from ats_pipelines.streaming.heal import HealPlanner
from ats_pipelines.streaming.ingest import SymbolPipeline
from ats_pipelines.streaming.intake import TradeIntake
from ats_pipelines.streaming.loops import StreamLoops
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.recovery import TradeRecovery
from ats_pipelines.streaming.rows import Precision
from ats_pipelines.streaming.runtime import GcPacer, freeze_heap, latency_tuning
from ats_pipelines.streaming.state import load_state
from ats_pipelines.streaming.supervisor import Backoff, Supervisor
from ats_pipelines.streaming.symbols import SymbolRegistry
from ats_pipelines.streaming.upkeep import Upkeep
from ats_pipelines.streaming.writer import Lane

log = logging.getLogger(__name__)
STARTUP_DB_WAIT_S = 30.0
SHUTDOWN_FLUSH_S = 30.0
STOP_REFILL_S = 10.0  # for fetching ids still missing at a stop, all symbols together
__all__ = ["BarCommit", "StreamService", "StreamServiceError"]


class StreamServiceError(RuntimeError):
    """The service stopped because of an error it cannot ride out (named in the message)."""


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class StreamService:
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
        self.symbols = SymbolRegistry()
        self.healing = HealPlanner(config.timeframes, config.heal_lookback_bars)
        self.stopping = asyncio.Event()
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self._crashed = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.supervisor = Supervisor(
            self.metrics,
            fatal=self._fatal,
            backoff=Backoff(base_s=config.restart_base_s, max_s=config.restart_max_s),
        )
        self._base_ms = min(parse_timeframe(tf).ms or 60_000 for tf in config.timeframes)
        spill = Path(config.spill_dir) / _safe(config.shard)
        self.emitter = Emitter(config, self.metrics, self.clock, self.symbols, spill)
        self.trades_client = self._client()
        self.books_client = self._client() if config.watch_books else None
        self.intake = TradeIntake(self.metrics, self.clock, self.healing, config.future_tolerance_s)
        self.recovery = TradeRecovery(
            config,
            self.symbols,
            self.intake,
            self.emitter,
            self.trades_client,
            TradeGapFiller(self.trades_client, use_history=bool(config.api_key)),
        )
        self.upkeep = Upkeep(
            config,
            self.symbols,
            self.emitter,
            self.metrics,
            self.clock,
            self.healing,
            (self.trades_client, self.books_client),
            self.gc_pacer,
            self.stopping,
        )
        self.loops = StreamLoops(
            config,
            (self.symbols, self.intake, self.emitter, self.recovery, self.upkeep),
            self.clock,
            (self.trades_client, self.books_client),
            self.supervisor,
            self._tasks.append,
        )

    # -- views other code reads (tests, benchmarks, the Dagster job) -------------------------

    @property
    def pipelines(self) -> dict[str, SymbolPipeline]:
        return self.symbols.pipelines

    @property
    def precision(self) -> dict[str, Precision]:
        return self.symbols.precision

    @property
    def bars_lane(self) -> LaneThread:
        return self.emitter.bars_lane

    @property
    def bulk_lane(self) -> Lane:
        return self.emitter.bulk_lane

    @property
    def bar_commits(self) -> deque[BarCommit]:
        return self.emitter.bar_commits

    @property
    def heal_passes(self) -> int:
        return self.upkeep.heal_passes

    def stats(self) -> dict[str, Any]:
        return self.upkeep.stats()

    def summary(self) -> dict[str, Any]:
        out = self.stats()
        out["shard"] = self.config.shard
        out["stop_reason"] = self.stop_reason
        return out

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
        except ConfigError as exc:  # bad input (a symbol the exchange lacks): one line
            self.error = exc
            log.error("event=stream_start_failed shard=%s error=%s", self.config.shard, exc)
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
        await self._retrying("load_markets", self._load_markets)
        await self._retrying("clock", lambda: self.clock.sync(self.trades_client.server_time_ms))
        if self.emitter.events is not None:
            self.emitter.events.start()
        for lane in self.emitter.lanes:  # connected before the load starts
            await lane.open()
            lane.start(self.supervisor)
        self.symbols.build(c, self.validator, await self._load_saved(), self._base_ms)
        cache = self.emitter.cache
        if cache is not None:
            cache.start()
        freeze_heap()  # before the first trade: its full collection stalls nothing
        self._start_tasks()
        log.info(
            "event=stream_started shard=%s exchange=%s symbols=%s timeframes=%s grace_ms=%s",
            c.shard,
            c.exchange,
            ",".join(c.symbols),
            ",".join(c.timeframes),
            c.grace_ms,
        )

    def _start_tasks(self) -> None:
        """Every long-lived task, under the supervisor (see ``supervisor``)."""
        c, upkeep, sup, emitter = self.config, self.upkeep, self.supervisor, self.emitter
        loops = self.loops
        keep = self._tasks.append
        keep(sup.start("gc", "gc", self.gc_pacer.run))
        for symbol in c.symbols:
            keep(
                sup.start(
                    f"trades-{symbol}",
                    "trades",
                    lambda s=symbol: loops.trades(s),
                    on_restart=lambda s=symbol: loops.watcher_restarted(s),
                    stall_s=c.stall_s,
                    active=lambda s=symbol: loops.market_traded(s),
                )
            )
            if self.books_client is not None:
                keep(
                    sup.start(
                        f"book-{symbol}",
                        "book",
                        lambda s=symbol: loops.book(s),
                        stall_s=c.stall_s,
                        active=lambda s=symbol: loops.trades_flowing(s),
                    )
                )
        keep(sup.start("tick", "tick", loops.tick, stall_s=c.stall_s))
        periodic: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = [
            ("snapshots", c.snapshot_interval_s, emitter.sample_books),
            ("checkpoint", c.checkpoint_interval_s, upkeep.checkpoint_all),
            ("heartbeat", c.heartbeat_interval_s, upkeep.heartbeat),
            ("clock", c.clock_sync_s, upkeep.sync_clock),
        ]
        if emitter.cache is not None:
            periodic.append(("open-bars", c.open_bar_interval_s, emitter.cache_open_bars))
        for name, seconds, fn in periodic:
            keep(
                sup.start(
                    name,
                    name,
                    lambda n=name, t=seconds, f=fn: self._every(n, t, f),
                    stall_s=max(c.stall_s, 3 * seconds),
                )
            )
        keep(sup.start("heal", "heal", lambda: upkeep.heal_loop(lambda: sup.beat("heal"))))
        keep(sup.start("watchdog", "watchdog", lambda: sup.watch(min(1.0, c.stall_s / 4))))
        if c.duration_s is not None:
            keep(asyncio.get_running_loop().create_task(self._stop_after(c.duration_s)))

    def _fatal(self, exc: BaseException, task: str) -> None:
        """A configuration error inside a task: the service stops with it."""
        self.error = exc
        log.error("event=stream_config_error task=%s error=%s", task, exc)
        self.request_stop(f"configuration error in {task}")

    async def _retrying(self, what: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """A start step retried with the supervisor's backoff until it succeeds; only a
        configuration error (or a stop) ends it."""
        failures = 0
        while True:
            try:
                await fn()
                return
            except ConfigError:
                raise
            except Exception as exc:
                failures += 1
                delay = self.supervisor.backoff.delay_s(failures, self.supervisor.rng)
                self.supervisor.record(f"start-{what}", "start", exc, delay)
                if self.stopping.is_set():
                    raise
                await asyncio.sleep(delay)

    async def _every(self, name: str, seconds: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.supervisor.beat(name)
            await fn()

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
            self.symbols.precision[symbol] = Precision.of_market(markets[symbol], mode)

    async def _load_saved(self) -> dict[str, dict[str, Any] | None]:
        """Each symbol's saved state (``ops.stream_state``); none when the database stays
        away for ``STARTUP_DB_WAIT_S``."""
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
                return saved
            except (DatabaseUnavailable, OSError) as exc:
                if time.monotonic() > deadline:
                    log.error(
                        "event=stream_state_unavailable shard=%s error=%s: starting "
                        "fresh (the healer fills what this costs)",
                        c.shard,
                        exc,
                    )
                    return saved
                await asyncio.sleep(1.0)

    async def _fetch_missing(self) -> None:
        """Before the final checkpoint: trade ids still missing (a reordered trade the stop cut
        off) are fetched now, so a service that is not restarted leaves no hole."""
        deadline = time.monotonic() + STOP_REFILL_S
        for p in self.pipelines.values():
            left = deadline - time.monotonic()
            if p.tracker is not None and p.tracker.missing and left > 0:
                try:
                    await asyncio.wait_for(self.recovery.refill(p, patience_s=0.0), left)
                except Exception as exc:  # the saved state still lists them for the next run
                    log.warning("event=stream_stop_refill_failed symbol=%s error=%r", p.symbol, exc)

    async def _shutdown(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        lanes = self.emitter.lanes
        if self._crashed:
            for lane in lanes:
                await lane.abandon()
        elif self.pipelines and self.bars_lane.started:
            await self._fetch_missing()
            await self.upkeep.checkpoint_all(final=True)  # emits what each holds, saves state
            await self.emitter.sample_books()
        for lane in lanes:
            if lane.started and not self._crashed:
                await lane.close(SHUTDOWN_FLUSH_S)
        if self.emitter.events is not None:
            await asyncio.to_thread(self.emitter.events.close)
        if self.pipelines and not self._crashed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.upkeep.heartbeat(final=True), 5.0)
        if self.emitter.cache is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.emitter.cache.close(), 5.0)
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
