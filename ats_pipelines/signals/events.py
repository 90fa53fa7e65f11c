"""The bar-commit event reader of the live signal service (contract: ``cache.events``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ats_pipelines.cache.events import BarEvent
from ats_pipelines.cache.keys import bar_events_key

log = logging.getLogger(__name__)


class BarEventReader:
    """Reads the bar events of some timeframes of one exchange, each after the last entry it
    returned (``XREAD BLOCK``: a reconnect misses nothing published meanwhile)."""

    def __init__(self, url: str, exchange: str, timeframes: Sequence[str]) -> None:
        self.client = aioredis.from_url(url, socket_connect_timeout=2.0)
        self.keys = [bar_events_key(exchange, tf) for tf in timeframes]
        self.last_ids: dict[str, str] = {}

    async def start_at_tail(self) -> None:
        """Read only entries added from now on. Called before a catch-up from the watermarks,
        so that nothing published during the catch-up is missed."""
        for key in self.keys:
            newest: Any = await self.client.xrevrange(key, count=1)
            self.last_ids[key] = newest[0][0].decode() if newest else "0-0"

    async def read(self, block_ms: int, count: int = 10_000) -> list[BarEvent]:
        """The next events, waiting up to ``block_ms`` for one; malformed entries are logged
        and skipped."""
        if not self.last_ids:
            await self.start_at_tail()
        answer: Any = await self.client.xread(self.last_ids, count=count, block=block_ms)  # type: ignore[arg-type]
        out: list[BarEvent] = []
        for raw_key, entries in answer or []:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            for entry_id, fields in entries:
                self.last_ids[key] = entry_id.decode()
                try:
                    out.append(BarEvent.decode(fields))
                except ValueError as exc:
                    log.warning("event=bar_event_malformed stream=%s error=%s", key, exc)
        return out

    async def close(self) -> None:
        await self.client.aclose()
