"""The stream publisher: every tick, what the market did since the last tick goes out.

One task for the whole emulator. Each tick it reads the clock, asks each source what happened
to the symbols someone listens to, encodes every event once and queues it on each listening
connection (their own tasks do the sending, so a slow client never holds up the others).
Scheduled faults (drops, time jumps, malformed frames) are applied here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor

from ats_pipelines.emulator.clock import EmulatorClock
from ats_pipelines.emulator.faults import Faults
from ats_pipelines.emulator.market_streams import ALL_MARKETS, SNAPSHOT_KINDS, SnapshotStreams
from ats_pipelines.emulator.model import DepthDiff
from ats_pipelines.emulator.protocol import (
    agg_trade_events,
    depth_event,
    kline_event,
    merge_diffs,
    trade_events,
)
from ats_pipelines.emulator.source import MarketSource
from ats_pipelines.emulator.streams import Stream, Subscriptions

log = logging.getLogger(__name__)
SLOW_DEPTH_MS = 1_000


class Publisher:
    def __init__(
        self,
        sources: dict[str, MarketSource],
        subs: Subscriptions,
        clock: EmulatorClock,
        faults: Faults,
        tick_s: float = 0.01,
    ) -> None:
        self.sources = sources
        self.subs = subs
        self.clock = clock
        self.faults = faults
        self.tick_s = tick_s
        self.events_sent = 0
        self.diffs_published: Counter[str] = Counter()  # per symbol, gaps excluded
        self.trades_published: Counter[str] = Counter()
        self.last_diff_id: dict[str, int] = {}  # per symbol, the newest update id sent
        self._slow_depth: dict[str, list[DepthDiff]] = defaultdict(list)
        self._turn: Counter[Stream] = Counter()  # per stream, who is served first next
        self.snapshots = SnapshotStreams(sources)
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetching: dict[tuple[str, int], Future[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                try:
                    self.publish_once()
                    self._prefetch()
                except Exception:  # one bad tick must not stop every stream
                    log.exception("event=publish_failed")
        finally:
            if self._prefetcher is not None:
                self._prefetcher.shutdown(wait=False, cancel_futures=True)

    def _prefetch(self) -> None:
        """Sources that generate the market in chunks (the synthetic one) get the next chunk
        of each watched symbol made in a worker thread, ahead of time: made inside a tick it
        held up every stream for ~100 ms (at 60x, every ten wall seconds)."""
        now = self.clock.market_ms()
        for key, future in list(self._prefetching.items()):
            if future.done():
                del self._prefetching[key]
                if future.exception() is not None:
                    log.warning(
                        "event=prefetch_failed symbol=%s error=%s", key[0], future.exception()
                    )
        for symbol_id in self.subs.symbols():
            source = self.sources[symbol_id]
            due = getattr(source, "prefetch_due", None)
            chunk = due(symbol_id, now) if due is not None else None
            if chunk is None or (symbol_id, chunk) in self._prefetching:
                continue
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="emulator-prefetch")
            self._prefetching[(symbol_id, chunk)] = self._prefetcher.submit(
                source.prefetch,  # pyright: ignore[reportAttributeAccessIssue]
                symbol_id,
                chunk,
            )

    def publish_once(self) -> int:
        wall = self.clock.wall_elapsed_s()
        jump = self.faults.time_jump_due(wall)
        if jump:
            self.clock.jump(jump)
            log.info("event=fault_time_jump delta_ms=%s", jump)
        if self.faults.drop_due(wall):
            self.drop_all()
        now = self.clock.market_ms()
        sent = 0
        for symbol_id in sorted(self.subs.symbols()):
            sent += self._publish_symbol(symbol_id, now)
        sent += self._publish_snapshots(ALL_MARKETS, self.subs.streams_of(ALL_MARKETS), now)
        frames = self.faults.malformed_frames(sent)
        if frames:
            for conn in list(self.subs.connections):
                conn.push_raw(frames)
        self.events_sent += sent
        return sent

    def drop_all(self) -> int:
        conns = list(self.subs.connections)
        for conn in conns:
            conn.abort()
        self.faults.counts["ws_dropped"] += len(conns)
        log.info("event=fault_ws_drop connections=%s", len(conns))
        return len(conns)

    def _publish_symbol(self, symbol_id: str, now: int) -> int:
        source = self.sources[symbol_id]
        streams = self.subs.streams_of(symbol_id)
        kinds = {s.kind for s in streams}
        sent = 0
        if kinds & {"trade", "aggTrade"}:
            batch = source.drain_trades(symbol_id, now)
            self.trades_published[symbol_id] += len(batch)
            if len(batch):
                encoded: dict[str, list[str] | None] = {"trade": None, "aggTrade": None}
                for stream in streams:
                    if stream.kind not in encoded:
                        continue
                    if encoded[stream.kind] is None:
                        events = (
                            trade_events(batch)
                            if stream.kind == "trade"
                            else agg_trade_events(batch)
                        )
                        encoded[stream.kind] = self.faults.mangle_trades(events)
                    sent += self._send(stream, encoded[stream.kind] or [])
        if kinds & {"depth", "depth100"}:
            diffs = [
                d
                for d in source.drain_depth(symbol_id, now)
                if not self.faults.skip_diff(symbol_id)
            ]
            self.diffs_published[symbol_id] += len(diffs)
            if diffs:
                self.last_diff_id[symbol_id] = diffs[-1].last_id
            fast = [depth_event(d) for d in diffs]
            slow = self._slow_batch(symbol_id, diffs, now, "depth" in kinds)
            for stream in streams:
                if stream.kind == "depth100" and fast:
                    sent += self._send(stream, fast)
                elif stream.kind == "depth" and slow:
                    sent += self._send(stream, slow)
        sent += self._publish_snapshots(symbol_id, streams, now)
        for stream in streams:
            if stream.kind == "kline":
                rows = source.drain_klines(symbol_id, stream.interval, now)
                if rows:
                    sent += self._send(
                        stream,
                        [kline_event(symbol_id, stream.interval, now, r, x) for r, x in rows],
                    )
        return sent

    def _publish_snapshots(self, symbol_id: str, streams: list[Stream], now: int) -> int:
        wanted = [s for s in streams if s.kind in SNAPSHOT_KINDS]
        if not wanted:
            return 0
        return sum(self._send(s, [f]) for s, f in self.snapshots.events(symbol_id, wanted, now))

    def _slow_batch(
        self, symbol_id: str, diffs: list[DepthDiff], now: int, wanted: bool
    ) -> list[str]:
        """The 1000 ms depth stream: diffs merged once a second of exchange time has gathered."""
        pending = self._slow_depth[symbol_id]
        if not wanted:
            pending.clear()
            return []
        pending.extend(diffs)
        if pending and now - pending[0].event_time >= SLOW_DEPTH_MS:
            merged = merge_diffs(pending)
            pending.clear()
            return [depth_event(merged)]
        return []

    def _send(self, stream: Stream, events: list[str]) -> int:
        listeners = self.subs.by_stream.get(stream)
        if not listeners:
            return 0
        # Connections take turns to be served first, as on a real exchange, where no
        # connection is always ahead: a client whose two connections share one order book
        # (ccxt's) resolves its watch only on the connection that advanced the book.
        conns = sorted(listeners, key=lambda c: c.conn_id)
        first = self._turn[stream] % len(conns)
        self._turn[stream] += 1
        for conn in conns[first:] + conns[:first]:
            conn.push(stream, events)
        return len(events) * len(conns)
