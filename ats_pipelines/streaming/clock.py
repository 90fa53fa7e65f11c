"""The exchange clock as this process estimates it: local wall time plus a measured offset.

The offset is taken as ``server_time - local time after the answer arrived``: the server read
its clock before we got the answer, so the estimate never runs ahead of the exchange (closing a
bar early would refuse its last trades; closing it a little late costs nothing). It is
re-measured every ``sync_s``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class ExchangeClock:
    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.synced_at: float | None = None

    async def sync(self, server_time_ms: Callable[[], Awaitable[int]]) -> int:
        server = await server_time_ms()
        self.offset_ms = int(server) - int(time.time() * 1000)
        self.synced_at = time.monotonic()
        return self.offset_ms

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def local_s(self, exchange_ms: int) -> float:
        """The local wall time (s) at which the exchange clock showed ``exchange_ms``."""
        return (exchange_ms - self.offset_ms) / 1000
