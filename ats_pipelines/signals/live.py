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
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ats_pipelines.config import ConfigError
from ats_pipelines.db.connect import connect, connection
from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.signals.analyzer import AnalyzerTarget
from ats_pipelines.signals.bars import bar_source
from ats_pipelines.signals.config import LiveConfig, SignalsSettings
from ats_pipelines.signals.coordinator import run_coordinator
from ats_pipelines.signals.events import BarEventReader
from ats_pipelines.signals.follower import TimeframeAnalyzer
from ats_pipelines.signals.heartbeat import ServiceIdentity, beat
from ats_pipelines.signals.metrics import SignalMetrics
from ats_pipelines.streaming.supervisor import Backoff, Supervisor

log = logging.getLogger(__name__)
__all__ = ["LiveConfig", "SignalService", "SignalServiceError"]
SIGNAL_TIMES_KEPT = 100_000  # signals awaiting their decision, for the latency of that hop


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
        self._analyzers: dict[str, TimeframeAnalyzer] = {}
        # (exchange, symbol, decision time) -> (bar committed, signal committed), wall seconds
        self._signal_times: OrderedDict[tuple[str, str, datetime], tuple[float | None, float]] = (
            OrderedDict()
        )
        self.counts = {"events": 0, "runs": 0, "signals": 0, "decisions": 0, "sweeps": 0}
        self.started_at = datetime.now(UTC)
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
            sources = {tf: await bar_source(conn, tf) for tf in s.timeframes}
        finally:
            await conn.close()
        if c.metrics_port is not None:
            port = self.metrics.serve(c.metrics_port)
            log.info("event=signal_service_metrics url=http://127.0.0.1:%s/metrics", port)
        sup = self.supervisor
        for tf in s.timeframes:
            reader = BarEventReader(c.redis_url, s.exchange, [tf]) if c.redis_url else None
            if reader is not None:
                self._readers[tf] = reader
            analyzer = TimeframeAnalyzer(
                tf,
                s,
                c,
                sources[tf],
                reader,
                self.metrics,
                self.counts,
                beat=lambda n=f"analyzer-{tf}": sup.beat(n),
                on_signal=self._remember,
                on_advanced=self._coordinate.set,
            )
            self._analyzers[tf] = analyzer
            self._tasks.append(sup.start(f"analyzer-{tf}", "analyzer", analyzer.run))
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

    @property
    def caught_up(self) -> set[str]:
        """The timeframes whose catch-up from the watermarks is done."""
        return {tf for tf, a in self._analyzers.items() if a.caught_up}

    def summary(self) -> dict[str, Any]:
        return {
            **self.counts,
            "service_id": self.config.service_id,
            "stop_reason": self.stop_reason,
            "latency": self.metrics.summary(),
        }

    # -- the analyzers ---------------------------------------------------------------------

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
