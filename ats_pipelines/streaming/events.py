"""The bar-commit event publisher (contract: ``cache.events``).

Publishing never slows the stream: :meth:`BarEventPublisher.publish` is called from the bar
lane's own thread right after a commit (``emitter``) — not from the ingest loop, whose
iterations at 10,000 trades/s would add their length to every event — and only appends to a
queue; the publisher's thread sends everything queued in one pipeline. With Redis away, events
are kept (bounded, oldest dropped first: the analyzers' watermarks make a lost event a delay,
never a gap) and sent once it is back; the outage is logged once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

import redis
from redis.exceptions import RedisError

from ats_pipelines.cache.events import BarEvent
from ats_pipelines.cache.keys import EVENTS_KEPT
from ats_pipelines.streaming.commits import BarCommit, OnBarsCommitted

log = logging.getLogger(__name__)

PENDING_KEPT = 100_000  # events held while Redis is away
RETRY_S = 0.5


class BarEventPublisher:
    """Sends bar events to their streams from a thread of its own."""

    def __init__(self, url: str, *, maxlen: int = EVENTS_KEPT) -> None:
        self.url, self.maxlen = url, maxlen
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._queue: queue.SimpleQueue[list[BarEvent] | None] = queue.SimpleQueue()
        self._pending: deque[BarEvent] = deque(maxlen=PENDING_KEPT)
        self._thread: threading.Thread | None = None
        self._down = False
        self.published = 0
        self.failures = 0

    def listener(self, exchange: str) -> OnBarsCommitted:
        """An ``OnBarsCommitted`` listener publishing the committed bars under ``exchange``."""

        def publish(commits: list[BarCommit]) -> None:
            self.publish(
                [BarEvent(exchange, c.symbol, c.timeframe, c.ts, c.committed) for c in commits]
            )

        return publish

    def publish(self, events: list[BarEvent]) -> None:
        """Queue ``events`` (thread-safe, never blocks)."""
        if events:
            self._queue.put(events)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bar-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                else:
                    self._pending.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if not self._send() and not stopping:
                time.sleep(RETRY_S)
                self._queue.put([])  # try again even when nothing new arrives

    def _send(self) -> bool:
        if not self._pending:
            return True
        events = list(self._pending)
        pipe = self.client.pipeline(transaction=False)
        sent = time.time()
        for e in events:
            pipe.xadd(e.key, e.fields(sent), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        try:
            pipe.execute()
        except (RedisError, OSError) as exc:
            self.failures += 1
            if not self._down:
                log.warning(
                    "event=bar_events_unavailable error=%s pending=%d",
                    type(exc).__name__,
                    len(events),
                )
            self._down = True
            return False
        for _ in events:
            self._pending.popleft()
        self.published += len(events)
        if self._down:
            log.info("event=bar_events_back sent=%d", len(events))
        self._down = False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds) and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self.client.close()
