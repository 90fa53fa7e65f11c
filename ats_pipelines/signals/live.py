"""The live signal service (``ats signals run``): analyzers and coordinator driven by bar events.

One supervised task per configured timeframe reads that timeframe's bar-commit events
(``cache.events``, published by the streaming service after each commit) and runs the analyzer
of each symbol an event names — :func:`~ats_pipelines.signals.analyzer.run_analyzer`, the very
code, rule and watermarks of the Dagster sensor path. A coordinator task runs
:func:`~ats_pipelines.signals.coordinator.run_coordinator` whenever an analyzer of one of its
timeframes advanced (a new signal, or a watermark that makes a waiting signal decidable).

**Exactly once, whichever path runs.** Nothing here is new bookkeeping: a run takes its series'
advisory lock and reads the watermark under it, writes signals with ``ON CONFLICT DO NOTHING``
and moves the watermark in the same transaction; the coordinator locks its watermark row. So
this service, the Dagster sensors' runs and a manual materialisation can overlap freely: each
closed bar is analysed by whichever gets its lock first, the other finds nothing new.

**No gap.** Each timeframe task, when it starts (and after any restart by the supervisor),
first notes the event stream's tail, then runs every series from its watermark (the catch-up
after downtime), then reads events from the noted tail — so nothing committed during the
catch-up is missed. An event whose bar the database clock does not yet call closed is retried
shortly; every ``sweep_interval_s`` without events all series are looked at anyway (bars
healed from REST carry no event; Redis may be away), and without Redis that look is the
whole service — the Dagster sensors stay the safety net either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ats_pipelines.cache.events import BarEvent
from ats_pipelines.config import ConfigError
from ats_pipelines.db.connect import connect, connection, create_pool
from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.signals.analyzer import AnalyzerBatch, AnalyzerTarget, run_analyzer
from ats_pipelines.signals.bars import BarSource, bar_source, datetime_to_ms
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.coordinator import run_coordinator
from ats_pipelines.signals.events import BarEventReader
from ats_pipelines.signals.heartbeat import ServiceIdentity, beat
from ats_pipelines.signals.metrics import SignalMetrics
from ats_pipelines.streaming.supervisor import Backoff, Supervisor

log = logging.getLogger(__name__)
SIGNAL_TIMES_KEPT = 100_000  # signals awaiting their decision, for the latency of that hop
POOL_MAX = 8  # connections per timeframe's analyzer task
RETRIES = 200  # an event's bar still not analysed after this many retries is left to the sweep


@dataclass(frozen=True)
class LiveConfig:
    """Where the live service reads and writes, and its knobs."""

    database_url: str
    redis_url: str | None  # None: no events; every sweep_interval_s all series are looked at
    service_id: str = "signals"
    sweep_interval_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    block_ms: int = 1_000
    retry_s: float = 0.05  # an event's bar not yet closed by the database clock
    metrics_port: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.sweep_interval_s <= 0:
            raise ConfigError(f"signal service sweep interval {self.sweep_interval_s}: must be > 0")
        if self.heartbeat_interval_s <= 0:
            raise ConfigError(
                f"signal service heartbeat interval {self.heartbeat_interval_s}: must be > 0"
            )
        if not self.service_id.strip():
            raise ConfigError("signal service id is empty")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"signal service duration {self.duration_s}: must be > 0")


class SignalServiceError(RuntimeError):
    """The service stopped on an error it cannot ride out (named in the message)."""


class SignalService:
    """``await SignalService(settings, config).run()`` until stopped; see the module docstring."""

    def __init__(
        self,
        settings: SignalsSettings,
        config: LiveConfig,
        *,
        install_signal_handlers: bool = False,
    ) -> None:
        self.settings, self.config = settings, config
        self.install_signal_handlers = install_signal_handlers
        self.metrics = SignalMetrics()
        self.supervisor = Supervisor(
            self.metrics,
            fatal=self._fatal,
            backoff=Backoff(base_s=0.2, max_s=10.0),
            service="signals",
        )
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self._coordinate = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._readers: dict[str, BarEventReader] = {}
        self._sources: dict[str, BarSource] = {}
        # (exchange, symbol, decision time) -> (bar committed, signal committed), wall seconds
        self._signal_times: OrderedDict[tuple[str, str, datetime], tuple[float | None, float]] = (
            OrderedDict()
        )
        self.counts = {"events": 0, "runs": 0, "signals": 0, "decisions": 0, "sweeps": 0}
        self.caught_up: set[str] = set()  # timeframes whose catch-up is done (tests)
        self.started_at = datetime.now(UTC)
        self._symbols = set(settings.symbols)
        self._identity: ServiceIdentity | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            log.info(
                "event=signal_service_stopping service=%s reason=%s", self.config.service_id, reason
            )
            self.stop_reason = reason
            self.stopping.set()

    def _fatal(self, exc: BaseException, task: str) -> None:
        self.error = exc
        log.error("event=signal_service_config_error task=%s error=%s", task, exc)
        self.request_stop(f"configuration error in {task}")

    async def run(self) -> dict[str, Any]:
        """Run until stopped; returns a summary. Raises :class:`SignalServiceError`."""
        loop = asyncio.get_running_loop()
        handled: dict[signal.Signals, Any] = {}
        if self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    previous = signal.getsignal(sig)
                    loop.add_signal_handler(sig, self.request_stop, sig.name)
                    handled[sig] = previous
        try:
            await self._start()
            self.ready.set()
            await self.stopping.wait()
        except Exception as exc:
            self.error = exc
            log.error("event=signal_service_start_failed error=%s", exc)
        finally:
            await self._shutdown()
            for sig, previous in handled.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous)
        if self.error is not None:
            raise SignalServiceError(
                f"signal service {self.config.service_id} stopped: {self.error}"
            ) from self.error
        return self.summary()

    async def _start(self) -> None:
        c, s = self.config, self.settings
        conn = await connect(c.database_url)
        try:
            for tf in s.timeframes:
                self._sources[tf] = await bar_source(conn, tf)
        finally:
            await conn.close()
        if c.metrics_port is not None:
            port = self.metrics.serve(c.metrics_port)
            log.info("event=signal_service_metrics url=http://127.0.0.1:%s/metrics", port)
        sup = self.supervisor
        for tf in s.timeframes:
            if c.redis_url:
                self._readers[tf] = BarEventReader(c.redis_url, s.exchange, [tf])
            self._tasks.append(
                sup.start(f"analyzer-{tf}", "analyzer", lambda t=tf: self._analyzer(t))
            )
        self._tasks.append(sup.start("coordinator", "coordinator", self._coordinator))
        self._tasks.append(sup.start("heartbeat", "heartbeat", self._heartbeat))
        if c.duration_s is not None:
            self._tasks.append(
                asyncio.get_running_loop().create_task(self._stop_after(c.duration_s))
            )
        log.info(
            "event=signal_service_started service=%s analyzer=%s exchange=%s symbols=%s "
            "timeframes=%s events=%s",
            c.service_id,
            s.analyzer_id,
            s.exchange,
            ",".join(s.symbols),
            ",".join(s.timeframes),
            "redis" if c.redis_url else "off",
        )

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.request_stop(f"duration {seconds}s reached")

    async def _shutdown(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for reader in self._readers.values():
            with contextlib.suppress(Exception):
                await reader.close()
        if self._identity is not None:  # the last word: final counts and latency
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._beat_once(final=True), 5.0)
        self.metrics.close()
        log.info(
            "event=signal_service_stopped service=%s reason=%s summary=%s",
            self.config.service_id,
            self.stop_reason,
            self.summary(),
        )

    def summary(self) -> dict[str, Any]:
        return {
            **self.counts,
            "service_id": self.config.service_id,
            "stop_reason": self.stop_reason,
            "latency": self.metrics.summary(),
        }

    # -- the analyzers ---------------------------------------------------------------------

    def _target(self, symbol: str, timeframe: str) -> AnalyzerTarget:
        s = self.settings
        return AnalyzerTarget(s.analyzer_id, s.exchange, symbol, timeframe)

    async def _analyzer(self, tf: str) -> None:
        name = f"analyzer-{tf}"
        reader = self._readers.get(tf)
        # one connection per symbol up to POOL_MAX: the symbols whose bars close together
        # are analysed side by side, not one after the other (measured at 10k trades/s: the
        # sixth symbol of a burst waited for five runs, p99 138 ms from event to analysed)
        size = max(1, min(len(self.settings.symbols), POOL_MAX))
        pool = await create_pool(self.config.database_url, min_size=1, max_size=size)
        try:
            if reader is not None and not reader.last_ids:
                await reader.start_at_tail()  # before the catch-up: nothing is missed
            await self._sweep(pool, tf)
            self.caught_up.add(tf)
            log.info("event=signal_analyzer_live timeframe=%s", tf)
            await self._follow(pool, tf, reader, name)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5.0)

    def _intake(
        self, events: list[BarEvent], tf: str, received: float
    ) -> dict[str, dict[int, float]]:
        """This task's events per symbol: bar open time -> commit time."""
        s = self.settings
        due: dict[str, dict[int, float]] = {}
        for e in events:
            if e.exchange != s.exchange or e.timeframe != tf or e.symbol not in self._symbols:
                continue
            self.counts["events"] += 1
            self.metrics.events.labels(timeframe=tf).inc()
            self.metrics.observe("committed_to_received", received - e.committed)
            if e.sent is not None:
                self.metrics.observe("committed_to_sent", e.sent - e.committed)
                self.metrics.observe("sent_to_received", received - e.sent)
            bars = due.setdefault(e.symbol, {})
            bars[e.ts] = min(e.committed, bars.get(e.ts, e.committed))
        return due

    async def _follow(
        self, pool: asyncpg.Pool, tf: str, reader: BarEventReader | None, name: str
    ) -> None:
        c = self.config
        retry: dict[str, tuple[float, dict[int, float]]] = {}  # symbol -> (due, events)
        attempts: dict[str, int] = {}
        last_sweep = time.monotonic()
        while True:
            self.supervisor.beat(name)
            now = time.monotonic()
            if now - last_sweep >= c.sweep_interval_s:
                await self._sweep(pool, tf)
                last_sweep = now = time.monotonic()
            if reader is None:
                await asyncio.sleep(max(0.0, c.sweep_interval_s - (now - last_sweep)))
                continue
            wait_s = min(c.block_ms / 1000, c.sweep_interval_s - (now - last_sweep))
            if retry:
                wait_s = min(wait_s, min(due for due, _ in retry.values()) - now)
            events = await reader.read(max(1, int(wait_s * 1000)))
            received = time.time()
            due = self._intake(events, tf, received)
            now = time.monotonic()
            for symbol, (when, bars) in list(retry.items()):
                if when <= now or symbol in due:
                    del retry[symbol]
                    due[symbol] = {**bars, **due.get(symbol, {})}
            symbols = list(due)
            marks = await asyncio.gather(
                *(self._analyze(pool, self._target(x, tf), due[x], received) for x in symbols)
            )
            for symbol, newest in zip(symbols, marks, strict=True):
                bars = due[symbol]
                missing = {ts: t for ts, t in bars.items() if newest is None or ts > newest}
                attempts[symbol] = attempts.get(symbol, 0) + 1 if missing else 0
                if missing and attempts[symbol] > RETRIES:
                    log.warning(
                        "event=signal_event_unprocessed timeframe=%s symbol=%s bars=%s "
                        "watermark_ms=%s (left to the sweep)",
                        tf,
                        symbol,
                        sorted(missing)[:5],
                        newest,
                    )
                    attempts[symbol] = 0
                elif missing:  # not closed by the database's clock yet (or not visible): soon
                    retry[symbol] = (time.monotonic() + c.retry_s, missing)

    async def _sweep(self, pool: asyncpg.Pool, tf: str) -> None:
        self.counts["sweeps"] += 1
        await asyncio.gather(
            *(self._analyze(pool, self._target(x, tf), {}, None) for x in self.settings.symbols)
        )

    async def _analyze(
        self,
        pool: asyncpg.Pool,
        target: AnalyzerTarget,
        bars: dict[int, float],
        received: float | None,
    ) -> int | None:
        """One analyzer run; returns the watermark after it (epoch ms) or None."""
        tf = target.timeframe
        analyzed: list[float] = []

        async def mark(_: AnalyzerBatch) -> None:
            analyzed.append(time.time())

        async with pool.acquire() as conn:
            result = await run_analyzer(
                conn,  # pyright: ignore[reportArgumentType] - a pool's proxy of a Connection
                target,
                self.settings.params(tf),
                batch_bars=self.settings.batch_bars,
                before_commit=mark,
                source=self._sources[tf],
            )
        done = time.time()
        self.counts["runs"] += 1
        self.metrics.runs.labels(trigger="event" if received is not None else "sweep").inc()
        if received is not None and analyzed:
            self.metrics.observe("received_to_analyzed", analyzed[0] - received)
            self.metrics.observe("analyzed_to_committed", done - analyzed[-1])
            for committed in bars.values():
                self.metrics.observe("bar_to_analyzed", done - committed)
        if result.inserted:
            self.counts["signals"] += result.inserted
            self.metrics.signals.labels(timeframe=tf).inc(result.inserted)
        for sig in result.signals:
            committed = bars.get(datetime_to_ms(sig.ts))
            if committed is not None:
                self.metrics.observe("bar_to_signal", done - committed)
            self._remember(target, sig.ts, committed, done)
        if result.batches and tf in self.settings.coordinator.timeframes:
            self._coordinate.set()
        mark_to = result.watermark_to
        return datetime_to_ms(mark_to) if mark_to is not None else None

    def _remember(
        self, target: AnalyzerTarget, ts: datetime, committed: float | None, done: float
    ) -> None:
        key = (target.exchange, target.symbol, ts + to_timedelta(target.timeframe))
        previous = self._signal_times.pop(key, None)
        if previous is not None and previous[0] is not None:
            committed = previous[0] if committed is None else max(committed, previous[0])
        self._signal_times[key] = (committed, done)
        while len(self._signal_times) > SIGNAL_TIMES_KEPT:
            self._signal_times.popitem(last=False)

    # -- the coordinator, the heartbeat ----------------------------------------------------

    async def _coordinator(self) -> None:
        s, c = self.settings, self.config
        conn = await connect(c.database_url)
        try:
            while True:
                self.supervisor.beat("coordinator")
                self._coordinate.clear()
                result = await run_coordinator(conn, s.analyzer_id, s.coordinator)
                done = time.time()
                self.counts["decisions"] += len(result.decisions)
                if result.decisions:
                    self.metrics.decisions.inc(len(result.decisions))
                for d in result.decisions:
                    times = self._signal_times.pop((d.exchange, d.symbol, d.decided_at), None)
                    if times is None:
                        continue
                    bar_committed, signal_committed = times
                    self.metrics.observe("signal_to_decision", done - signal_committed)
                    if bar_committed is not None:
                        self.metrics.observe("bar_to_decision", done - bar_committed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._coordinate.wait(), c.sweep_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5.0)

    def _stats(self, final: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = {**self.counts, "caught_up": sorted(self.caught_up)}
        stats["latency"] = self.metrics.summary()
        if final:
            stats["stopped"] = self.stop_reason
        return stats

    async def _beat_once(self, final: bool = False) -> None:
        assert self._identity is not None
        async with connection(self.config.database_url, timeout=5.0) as conn:
            await beat(conn, self._identity, self._stats(final))

    async def _heartbeat(self) -> None:
        s, c = self.settings, self.config
        self._identity = me = ServiceIdentity(
            c.service_id,
            s.analyzer_id,
            s.coordinator.coordinator_id,
            s.exchange,
            s.symbols,
            s.timeframes,
            self.started_at,
        )
        conn = await connect(c.database_url)
        try:
            while True:
                self.supervisor.beat("heartbeat")
                try:
                    await beat(conn, me, self._stats())
                except asyncpg.UndefinedTableError as exc:
                    raise ConfigError(
                        f"{exc}: the schema is not migrated; run `ats db migrate`"
                    ) from None
                await asyncio.sleep(c.heartbeat_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5.0)
