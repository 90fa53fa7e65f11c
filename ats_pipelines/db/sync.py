"""One asyncpg connection for synchronous callers (the analysts' read API).

The platform talks to PostgreSQL through asyncpg; a synchronous API gets the same driver (and
the same query helpers, which take an ``asyncpg.Connection``) through a private event loop in a
daemon thread. Each call blocks until its query is done; calls are serialised, so one instance
may be shared between threads. The connection opens on first use and reopens if it was closed
(a server restart). asyncpg prepares and caches each statement on first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


class SyncConnection:
    """A blocking facade over one asyncpg connection (see the module docstring)."""

    def __init__(self, url: str, **connect_kwargs: Any) -> None:
        self.url = url
        self._kwargs = connect_kwargs
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="ats-sync-db", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(self.url, **self._kwargs)
        return conn

    def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``await work(connection)`` on the private loop and return its result."""

        async def call() -> T:
            return await work(await self._connection())

        with self._lock:
            return asyncio.run_coroutine_threadsafe(call(), self._ensure_loop()).result()

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(sql, *args)

        return self.run(work)

    def close(self) -> None:
        with self._lock:
            if self._loop is None:
                return
            if self._conn is not None:
                conn = self._conn
                asyncio.run_coroutine_threadsafe(conn.close(), self._loop).result()
                self._conn = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join()
            self._loop.close()
            self._loop = self._thread = None
