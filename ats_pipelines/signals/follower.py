"""One timeframe's analyzer task of the live signal service (``live``): the catch-up from
the watermarks, then the bar events of that timeframe, each run by ``analyzer.run_analyzer``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from ats_pipelines.cache.events import BarEvent
from ats_pipelines.db.connect import create_pool
from ats_pipelines.signals.analyzer import AnalyzerBatch, AnalyzerTarget, run_analyzer
from ats_pipelines.signals.bars import BarSource, datetime_to_ms
from ats_pipelines.signals.config import LiveConfig, SignalsSettings
from ats_pipelines.signals.events import BarEventReader
from ats_pipelines.signals.metrics import SignalMetrics

log = logging.getLogger(__name__)
POOL_MAX = 8  # connections per timeframe's analyzer task
RETRIES = 200  # an event's bar still not analysed after this many retries is left to the sweep

OnSignal = Callable[[AnalyzerTarget, datetime, float | None, float], None]
"""(series, signal bar's open time, the bar's commit time if an event named it, signal commit
time): what the coordinator's latency needs."""


class TimeframeAnalyzer:
    """Catch-up, then events, for one timeframe; counts into the service's ``counts``."""

    def __init__(
        self,
        timeframe: str,
        settings: SignalsSettings,
        config: LiveConfig,
        source: BarSource,
        reader: BarEventReader | None,
        metrics: SignalMetrics,
        counts: dict[str, Any],
        *,
        beat: Callable[[], None],
        on_signal: OnSignal,
        on_advanced: Callable[[], None],
    ) -> None:
        self.timeframe, self.settings, self.config = timeframe, settings, config
        self.source, self.reader, self.metrics, self.counts = source, reader, metrics, counts
        self.beat, self.on_signal, self.on_advanced = beat, on_signal, on_advanced
        self._symbols = set(settings.symbols)
        self.caught_up = False

    def _target(self, symbol: str) -> AnalyzerTarget:
        s = self.settings
        return AnalyzerTarget(s.analyzer_id, s.exchange, symbol, self.timeframe)

    async def run(self) -> None:
        """Catch up from the watermarks, then follow the events (what the supervisor runs,
        and runs again after a failure: the reader keeps its place)."""
        tf, reader = self.timeframe, self.reader
        # one connection per symbol up to POOL_MAX: the symbols whose bars close together
        # are analysed side by side, not one after the other (measured at 10k trades/s: the
        # sixth symbol of a burst waited for five runs, p99 138 ms from event to analysed)
        size = max(1, min(len(self.settings.symbols), POOL_MAX))
        pool = await create_pool(self.config.database_url, min_size=1, max_size=size)
        try:
            if reader is not None and not reader.last_ids:
                await reader.start_at_tail()  # before the catch-up: nothing is missed
            await self._sweep(pool)
            self.caught_up = True
            log.info("event=signal_analyzer_live timeframe=%s", tf)
            await self._follow(pool, reader)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5.0)

    def _intake(self, events: list[BarEvent], received: float) -> dict[str, dict[int, float]]:
        """This task's events per symbol: bar open time -> commit time."""
        s, tf = self.settings, self.timeframe
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

    async def _follow(self, pool: asyncpg.Pool, reader: BarEventReader | None) -> None:
        c, tf = self.config, self.timeframe
        retry: dict[str, tuple[float, dict[int, float]]] = {}  # symbol -> (due, events)
        attempts: dict[str, int] = {}
        last_sweep = time.monotonic()
        while True:
            self.beat()
            now = time.monotonic()
            if now - last_sweep >= c.sweep_interval_s:
                await self._sweep(pool)
                last_sweep = now = time.monotonic()
            if reader is None:
                await asyncio.sleep(max(0.0, c.sweep_interval_s - (now - last_sweep)))
                continue
            wait_s = min(c.block_ms / 1000, c.sweep_interval_s - (now - last_sweep))
            if retry:
                wait_s = min(wait_s, min(due for due, _ in retry.values()) - now)
            events = await reader.read(max(1, int(wait_s * 1000)))
            received = time.time()
            due = self._intake(events, received)
            now = time.monotonic()
            for symbol, (when, bars) in list(retry.items()):
                if when <= now or symbol in due:
                    del retry[symbol]
                    due[symbol] = {**bars, **due.get(symbol, {})}
            symbols = list(due)
            marks = await asyncio.gather(
                *(self._analyze(pool, self._target(x), due[x], received) for x in symbols)
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

    async def _sweep(self, pool: asyncpg.Pool) -> None:
        self.counts["sweeps"] += 1
        await asyncio.gather(
            *(self._analyze(pool, self._target(x), {}, None) for x in self.settings.symbols)
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
                source=self.source,
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
            self.on_signal(target, sig.ts, committed, done)
        if result.batches and tf in self.settings.coordinator.timeframes:
            self.on_advanced()
        mark_to = result.watermark_to
        return datetime_to_ms(mark_to) if mark_to is not None else None
