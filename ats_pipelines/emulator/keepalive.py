"""Binance's websocket connection rules: server pings, silent clients dropped, 24-hour limit.

Binance pings every connection (every 20 s on spot) and disconnects a client that has not
answered with a pong within a minute; a connection is valid for 24 hours, after which the
server closes it and the client must reconnect. Both are configurable so tests can use
seconds. Unsolicited pongs count as answers; a client ping is answered with a pong.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WsLimits:
    """``ping_interval_s=0`` sends no pings (and drops nobody for silence); ``max_age_s=0``
    keeps connections forever."""

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_age_s: float = 86_400.0


class KeepAlive:
    """One connection's pinger and reaper; ``pong()`` when the client answers."""

    def __init__(
        self, ws: web.WebSocketResponse, limits: WsLimits, conn_id: int, abort: object
    ) -> None:
        self.ws = ws
        self.limits = limits
        self.conn_id = conn_id
        self._abort = abort  # drops the connection without a closing handshake
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.opened = loop.time()
        self.last_pong = self.opened
        self.pings_sent = 0
        self.closed_for: str | None = None  # "pong_timeout" | "max_age"
        self.task = loop.create_task(self._run())

    def pong(self) -> None:
        self.last_pong = self._loop.time()

    async def _run(self) -> None:
        limits = self.limits
        step = min(x for x in (limits.ping_interval_s, limits.max_age_s, 3600.0) if x > 0)
        next_ping = self.opened + limits.ping_interval_s
        try:
            while not self.ws.closed:
                await asyncio.sleep(max(0.0, min(step, next_ping - self._loop.time())))
                now = self._loop.time()
                if limits.max_age_s and now - self.opened >= limits.max_age_s:
                    await self._close("max_age", WSCloseCode.GOING_AWAY)
                    return
                if limits.ping_interval_s and now - self.last_pong >= limits.pong_timeout_s:
                    await self._close("pong_timeout", WSCloseCode.POLICY_VIOLATION)
                    return
                if limits.ping_interval_s and now >= next_ping:
                    await self.ws.ping(b"")
                    self.pings_sent += 1
                    next_ping = now + limits.ping_interval_s
        except (ConnectionResetError, RuntimeError):
            return

    async def _close(self, reason: str, code: int) -> None:
        self.closed_for = reason
        log.info("event=ws_server_close conn=%s reason=%s", self.conn_id, reason)
        if reason == "pong_timeout":
            assert callable(self._abort)
            self._abort()  # a silent client gets no handshake: it may not be reading
            return
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 5.0)
        except (TimeoutError, ConnectionResetError, RuntimeError):
            assert callable(self._abort)
            self._abort()

    def cancel(self) -> None:
        self.task.cancel()
