"""Binance stream names and the subscriptions of connected websocket clients.

Supported streams (spot): ``<symbol>@trade``, ``<symbol>@aggTrade``, ``<symbol>@depth`` (1000 ms),
``<symbol>@depth@100ms``, ``<symbol>@kline_<interval>``, ``<symbol>@miniTicker``,
``<symbol>@ticker``, ``<symbol>@bookTicker``, ``<symbol>@depth<5|10|20>[@100ms|@1000ms]`` and the
all-market ``!miniTicker@arr`` and ``!ticker@arr``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ats_pipelines.emulator.intervals import is_interval
from ats_pipelines.emulator.market_streams import ALL_MARKETS
from ats_pipelines.emulator.protocol import combined

log = logging.getLogger(__name__)
MAX_QUEUED_BATCHES = 20_000  # a client this far behind is cut off, as Binance does


@dataclass(frozen=True)
class Stream:
    name: str  # as the client wrote it
    symbol_id: str  # upper case Binance id
    kind: str  # trade | aggTrade | depth | depth100 | kline | miniTicker | ticker | bookTicker
    # | partialDepth
    interval: str = ""  # kline interval, or partial depth "<levels>[@100ms]"


class StreamError(ValueError):
    pass


def parse_stream(name: str, known: set[str]) -> Stream:
    """Parse a stream name; unknown symbols or kinds raise :class:`StreamError`."""
    if not isinstance(name, str) or "@" not in name:
        raise StreamError(f"invalid stream name {name!r}")
    if name in ("!miniTicker@arr", "!ticker@arr"):
        return Stream(name, ALL_MARKETS, name[1:].partition("@")[0])
    sym, _, rest = name.partition("@")
    symbol_id = sym.upper()
    if symbol_id not in known or sym != sym.lower():
        raise StreamError(f"unknown symbol in stream {name!r}")
    if rest in ("trade", "aggTrade"):
        return Stream(name, symbol_id, rest)
    if rest in ("depth", "depth@1000ms"):
        return Stream(name, symbol_id, "depth")
    if rest == "depth@100ms":
        return Stream(name, symbol_id, "depth100")
    if rest in ("miniTicker", "ticker", "bookTicker"):
        return Stream(name, symbol_id, rest)
    levels, _, speed = rest[5:].partition("@")
    if (
        rest.startswith("depth")
        and levels in ("5", "10", "20")
        and speed in ("", "100ms", "1000ms")
    ):
        return Stream(
            name, symbol_id, "partialDepth", levels + ("@100ms" if speed == "100ms" else "")
        )
    if rest.startswith("kline_") and is_interval(rest[6:]):
        return Stream(name, symbol_id, "kline", rest[6:])
    raise StreamError(f"unsupported stream {name!r}")


class Connection:
    """One websocket client: its streams and a send queue drained by its own task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        combined_mode: bool,
        latency: Callable[[], float],
        conn_id: int,
    ) -> None:
        self.ws = ws
        self.request = request
        self.combined = combined_mode
        self.streams: dict[str, Stream] = {}
        self.queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self._latency = latency  # seconds to hold each batch (the latency fault)
        self.conn_id = conn_id
        self.sent = 0
        self.sender = asyncio.get_running_loop().create_task(self._send_loop())

    def push(self, stream: Stream, events: list[str]) -> None:
        if self.combined:
            events = [combined(stream.name, e) for e in events]
        self.push_raw(events)

    def push_raw(self, frames: list[str]) -> None:
        if self.queue.qsize() > MAX_QUEUED_BATCHES:
            log.warning(
                "event=ws_slow_client conn=%s queued=%s action=close",
                self.conn_id,
                self.queue.qsize(),
            )
            self.abort()
            return
        self.queue.put_nowait(frames)

    async def _send_loop(self) -> None:
        try:
            while True:
                batch = await self.queue.get()
                if batch is None:
                    return
                delay = self._latency()
                if delay:
                    await asyncio.sleep(delay)
                for frame in batch:
                    await self.ws.send_str(frame)
                self.sent += len(batch)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return

    def abort(self) -> None:
        """Drop the connection without a closing handshake, like a network failure."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.queue.put_nowait(None)


class Subscriptions:
    """Which connection listens to which stream, and which symbols anyone listens to."""

    def __init__(self) -> None:
        self.by_stream: dict[Stream, set[Connection]] = defaultdict(set)
        self.connections: set[Connection] = set()

    def add(self, conn: Connection, stream: Stream) -> bool:
        """Subscribe; True if the symbol had no listener before."""
        new_symbol = stream.symbol_id not in self.symbols() and stream.symbol_id != ALL_MARKETS
        conn.streams[stream.name] = stream
        self.by_stream[stream].add(conn)
        return new_symbol

    def remove(self, conn: Connection, name: str) -> str | None:
        """Unsubscribe; returns the symbol if it has no listener left."""
        stream = conn.streams.pop(name, None)
        if stream is None:
            return None
        listeners = self.by_stream.get(stream)
        if listeners is not None:
            listeners.discard(conn)
            if not listeners:
                del self.by_stream[stream]
        if stream.symbol_id == ALL_MARKETS or stream.symbol_id in self.symbols():
            return None
        return stream.symbol_id

    def drop(self, conn: Connection) -> list[str]:
        """Forget a connection; returns symbols nobody listens to any more."""
        self.connections.discard(conn)
        orphaned = [self.remove(conn, name) for name in list(conn.streams)]
        return [s for s in orphaned if s and s != ALL_MARKETS]

    def symbols(self) -> set[str]:
        """Symbols someone listens to (the all-market streams' ``*`` not included)."""
        return {s.symbol_id for s in self.by_stream if s.symbol_id != ALL_MARKETS}

    def streams_of(self, symbol_id: str) -> list[Stream]:
        return [s for s in self.by_stream if s.symbol_id == symbol_id]
