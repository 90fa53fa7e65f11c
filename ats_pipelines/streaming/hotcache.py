"""The hot cache writer: latest bars and book metrics to Redis (layout: ``cache.keys``).

Updates are coalesced in memory (the newest value per key wins; final bars are kept per key up
to ``BARS_KEPT``) and flushed in one pipeline every ``interval_s``, so a burst of trades costs
one round trip. Redis being away never stops the stream: the pending values stay (bounded)
and the next flush retries; the failure is logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ats_pipelines.cache.keys import (
    BARS_KEPT,
    bars_key,
    book_key,
    encode_bar,
    encode_book,
    open_bar_key,
    stream_key,
)

log = logging.getLogger(__name__)


class HotCache:
    """Coalescing Redis writer of one streaming process."""

    def __init__(self, url: str, exchange: str, *, interval_s: float = 0.1) -> None:
        self.url, self.exchange, self.interval_s = url, exchange, interval_s
        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._final: dict[str, dict[int, str]] = {}
        self._open: dict[str, str] = {}
        self._books: dict[str, dict[str, str]] = {}
        self._hashes: dict[str, dict[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self.flushes = 0

    def final_bars(
        self,
        symbol: str,
        timeframe: str,
        values: Iterable[Mapping[str, Any]],
        source: str = "stream",
    ) -> None:
        pending = self._final.setdefault(bars_key(self.exchange, symbol, timeframe), {})
        for v in values:
            pending[int(v["ts"])] = encode_bar(v, source=source)
        if len(pending) > BARS_KEPT:
            for ts in sorted(pending)[:-BARS_KEPT]:
                del pending[ts]

    def open_bar(self, symbol: str, timeframe: str, values: Mapping[str, Any]) -> None:
        self._open[open_bar_key(self.exchange, symbol, timeframe)] = encode_bar(values, final=False)

    def book(self, symbol: str, values: Mapping[str, Any]) -> None:
        self._books[book_key(self.exchange, symbol)] = encode_book(values)

    def shard(self, shard: str, values: Mapping[str, str]) -> None:
        self._hashes[stream_key(shard)] = dict(values)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hot-cache")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> bool:
        if not (self._final or self._open or self._books or self._hashes):
            return True
        final, self._final = self._final, {}
        opened, self._open = self._open, {}
        books, self._books = self._books, {}
        hashes, self._hashes = self._hashes, {}
        pipe = self.client.pipeline(transaction=False)
        for key, bars in final.items():
            for ts, member in sorted(bars.items()):
                pipe.zremrangebyscore(key, ts, ts)  # a replayed bar replaces itself
                pipe.zadd(key, {member: ts})
            pipe.zremrangebyrank(key, 0, -(BARS_KEPT + 1))
        for key, value in opened.items():
            pipe.set(key, value)
        for key, mapping in (*books.items(), *hashes.items()):
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            for key, bars in final.items():  # keep them for the next try, newest winning
                merged = {**bars, **self._final.get(key, {})}
                self._final[key] = dict(sorted(merged.items())[-BARS_KEPT:])
            self._open = {**opened, **self._open}
            self._books = {**books, **self._books}
            self._hashes = {**hashes, **self._hashes}
            if not self._down:
                log.warning(
                    "event=hot_cache_unavailable url_port=%s error=%s",
                    self.url.rsplit(":", 1)[-1],
                    exc,
                )
            self._down = True
            return False
        if self._down:
            log.info("event=hot_cache_back")
        self._down = False
        self.flushes += 1
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
        await self.client.aclose()
