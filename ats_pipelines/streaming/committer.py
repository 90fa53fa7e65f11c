"""The bar lane's own thread: commits that do not wait for the ingest loop.

At 10,000 trades/s the service's asyncio loop is busy most of the time parsing websocket
messages; every round trip of a writer on that loop waits for the loop's current iteration
(several milliseconds of messages) before its reply is read, and a commit is several such waits
(queue hand-off, intake, the statement, the commit). Measured: closed -> committed p50 41 ms,
p99 233 ms on the shared loop. :class:`LaneThread` runs one :class:`~.writer.Lane` — unchanged:
same queue, back-pressure, spill and replay — on a private event loop in a daemon thread, so its
replies are read as soon as the thread gets the GIL (the service lowers the interpreter's switch
interval while it runs, see ``service.SWITCH_INTERVAL_S``).

The ingest loop stays the only loop that owns exchange connections and symbol state; this thread
only runs the lane. ``put`` is non-blocking while fewer than ``max_in_flight`` batches are on
their way to the lane's queue, then waits for the oldest (back-pressure, as with a plain lane).
Commit callbacks are carried back to the ingest loop with ``call_soon_threadsafe``; the commit
time they report is taken in this thread, at the commit. An ``on_commit_here`` callback runs in
this thread at once instead (it must be thread-safe and must not block: the bar-event
publisher's hand-off, which would otherwise wait for the ingest loop's current iteration).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any

from ats_pipelines.streaming.spill import Batch
from ats_pipelines.streaming.supervisor import Supervisor
from ats_pipelines.streaming.writer import Lane, OnCommit

MAX_IN_FLIGHT = 256


class LaneThread:
    """A :class:`Lane` driven from its own thread and event loop; the producer side is called
    from the ingest loop."""

    def __init__(
        self,
        lane: Lane,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        on_commit_here: OnCommit | None = None,
    ) -> None:
        self.lane = lane
        self.max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._in_flight: deque[concurrent.futures.Future[None]] = deque()
        self._on_commit = lane.on_commit
        self._on_commit_here = on_commit_here
        self._caller: asyncio.AbstractEventLoop | None = None
        if self._on_commit is not None or on_commit_here is not None:
            lane.on_commit = self._commit_callback

    # -- the thread ------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _ensure_thread(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._caller = asyncio.get_running_loop()
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name=f"lane-{self.lane.name}", daemon=True
            )
            self._thread.start()
            ready.wait()
        assert self._loop is not None
        return self._loop

    async def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        loop = self._ensure_thread()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _commit_callback(self, batches: list[Batch], committed: float) -> None:
        if self._on_commit_here is not None:
            self._on_commit_here(batches, committed)
        if self._on_commit is None or self._caller is None:
            return
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody listens
            self._caller.call_soon_threadsafe(self._on_commit, batches, committed)

    async def _stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        self._loop = self._thread = None

    # -- the Lane's interface, from the ingest loop ------------------------------------------

    async def open(self) -> None:
        await self._call(self.lane.open())

    def start(self, supervisor: Supervisor | None = None) -> None:
        loop = self._ensure_thread()

        async def start() -> None:
            self.lane.start(supervisor)  # supervised on this thread's loop

        asyncio.run_coroutine_threadsafe(start(), loop).result()

    async def put(self, batch: Batch) -> None:
        if not batch.rows:
            return
        loop = self._ensure_thread()
        in_flight = self._in_flight
        while in_flight and in_flight[0].done():
            in_flight.popleft().result()  # surfaces an error of an earlier hand-off
        in_flight.append(asyncio.run_coroutine_threadsafe(self.lane.put(batch), loop))
        while len(in_flight) > self.max_in_flight:  # the lane is full: wait, as a Lane would
            await asyncio.wrap_future(in_flight.popleft())

    async def _drain_in_flight(self) -> None:
        while self._in_flight:
            future = self._in_flight.popleft()
            with contextlib.suppress(concurrent.futures.CancelledError):
                await asyncio.wrap_future(future)

    async def close(self, timeout: float) -> None:
        try:
            await self._drain_in_flight()
            await self._call(self.lane.close(timeout))
        finally:
            await self._stop_thread()

    async def abandon(self) -> None:
        try:
            for future in self._in_flight:
                future.cancel()
            self._in_flight.clear()
            await self._call(self.lane.abandon())
        finally:
            await self._stop_thread()

    async def wait_idle(self, timeout: float) -> bool:
        await self._drain_in_flight()
        return await self._call(self.lane.wait_idle(timeout))

    # -- read-only views (ints and flags: safe to read across the thread) --------------------

    @property
    def name(self) -> str:
        return self.lane.name

    @property
    def started(self) -> bool:
        return self.lane.started

    @property
    def quiet(self) -> bool:
        """Nothing handed over is still on its way to the database."""
        return all(f.done() for f in self._in_flight) and self.lane.quiet

    @property
    def spill(self) -> Any:
        return self.lane.spill

    @property
    def spilled_batches(self) -> int:
        return self.lane.spilled_batches

    def stats(self) -> dict[str, Any]:
        return {**self.lane.stats(), "in_flight": len(self._in_flight)}
