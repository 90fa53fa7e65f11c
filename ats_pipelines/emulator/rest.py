"""Binance spot public REST endpoints, answered from the emulator's market sources.

Parameters and errors follow Binance: unknown symbols answer ``-1121 Invalid symbol.``, bad
numbers ``-1100``, a missing symbol ``-1102``; klines cap ``limit`` at 1000 (default 500),
trades at 1000, depth at 5000 (default 100).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ats_pipelines.emulator import protocol
from ats_pipelines.emulator.faults import Faults
from ats_pipelines.emulator.intervals import is_interval
from ats_pipelines.emulator.ratelimit import RateLimitConfig, WeightLimiter, request_weight
from ats_pipelines.emulator.source import MarketSource
from ats_pipelines.emulator.tickers import Tickers

if TYPE_CHECKING:
    from ats_pipelines.emulator.clock import EmulatorClock

KLINES_MAX = 1000
TRADES_MAX = 1000
DEPTH_MAX = 5000
AGG_WINDOW_MS = 3_600_000


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or len(text) > 20:
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(text)


def _limit(request: web.Request, default: int, cap: int) -> int:
    limit = _int(request, "limit", default)
    assert limit is not None
    if limit < 1:
        raise BinanceError(400, -1130, "Invalid data sent for a parameter.")
    return min(limit, cap)


class BinanceRest:
    """Route handlers; one instance per emulator."""

    def __init__(
        self,
        sources: dict[str, MarketSource],
        clock: EmulatorClock,
        faults: Faults,
        rate_limit: RateLimitConfig | None = None,
    ) -> None:
        self.limiter = WeightLimiter(rate_limit or RateLimitConfig())
        self.sources = sources
        self.clock = clock
        self.faults = faults
        self.paths: Counter[str] = Counter()  # requests served per path (tests read it)
        # diffs published so far for a symbol whose depth stream runs, else None (server sets)
        self.stream_progress: Callable[[str], int | None] = lambda symbol_id: None
        self.tick_s = 0.01
        self.tickers = Tickers(self)

    def routes(self) -> list[web.RouteDef]:
        get = web.get
        return [
            get("/api/v3/ping", self.ping),
            get("/api/v1/ping", self.ping),
            get("/api/v3/time", self.time),
            get("/api/v1/time", self.time),
            get("/api/v3/exchangeInfo", self.exchange_info),
            get("/api/v3/klines", self.klines),
            get("/api/v3/uiKlines", self.klines),
            get("/api/v3/depth", self.depth),
            get("/api/v3/trades", self.trades),
            get("/api/v3/historicalTrades", self.trades),
            get("/api/v3/aggTrades", self.agg_trades),
            *self.tickers.routes(),
        ]

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Request weight, injected faults, then the handler; Binance-shaped errors for
        everything; the used weight in the headers of every spot ``/api/`` answer."""
        if not request.path.startswith(("/api/", "/sapi/", "/fapi/", "/dapi/", "/eapi/")):
            return await handler(request)
        self.paths[request.path] += 1
        weighed = self.limiter.enabled and request.path.startswith("/api/")
        if weighed:
            status, retry_after = self.limiter.admit(request_weight(request))
            if retry_after is not None:
                return self.limiter.refusal(status, retry_after)
        response = await self._faulted(request, handler)
        if weighed:
            response.headers.update(self.limiter.headers())
        return response

    async def _faulted(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        delay = self.faults.latency_s()
        if delay:
            await asyncio.sleep(delay)
        fault = self.faults.rest_fault()
        if fault is not None and fault.status == 0:  # the connection drops, no answer at all
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault is not None:
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            return web.json_response(
                protocol.error_body(fault.code, fault.msg), status=fault.status, headers=headers
            )
        try:
            return await handler(request)
        except BinanceError as exc:
            return web.json_response(protocol.error_body(exc.code, exc.msg), status=exc.status)
        except web.HTTPNotFound:
            return web.json_response(
                protocol.error_body(
                    -5000,
                    f"Path {request.path} is not served by the emulator (Binance spot public "
                    "market data only).",
                ),
                status=404,
            )

    def source_of(self, request: web.Request) -> tuple[str, MarketSource]:
        symbol_id = request.query.get("symbol")
        if not symbol_id:
            raise BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        source = self.sources.get(symbol_id)
        if source is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return symbol_id, source

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock.now_ms()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        specs = {
            s.symbol_id: s
            for src in dict.fromkeys(self.sources.values())
            for s in src.specs()
            if self.sources.get(s.symbol_id) is src
        }
        wanted: list[str] | None = None
        if "symbol" in request.query:
            wanted = [request.query["symbol"]]
        elif "symbols" in request.query:
            wanted = [s.strip('"') for s in request.query["symbols"].strip("[]").split(",")]
        if wanted is not None:
            if any(w not in specs for w in wanted):
                raise BinanceError(400, -1121, "Invalid symbol.")
            chosen = [specs[w] for w in wanted]
        else:
            chosen = list(specs.values())
        return web.json_response(protocol.exchange_info(chosen, self.clock.now_ms()))

    async def klines(self, request: web.Request) -> web.Response:
        symbol_id, source = self.source_of(request)
        interval = request.query.get("interval", "")
        if not is_interval(interval):
            raise BinanceError(400, -1120, "Invalid interval.")
        start, end = _int(request, "startTime"), _int(request, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(400, -1023, "Start time is greater than end time.")
        limit = _limit(request, 500, KLINES_MAX)
        rows = source.klines(symbol_id, interval, start, end, limit, self.clock.market_ms())
        return web.Response(body=protocol.klines_body(rows), content_type="application/json")

    async def depth(self, request: web.Request) -> web.Response:
        symbol_id, source = self.source_of(request)
        limit = _limit(request, 100, DEPTH_MAX)
        snapshot = source.depth(symbol_id, limit, self.clock.market_ms())
        await self._lag_behind_stream(symbol_id, snapshot.last_update_id)
        return web.json_response(protocol.depth_rest(snapshot))

    async def _lag_behind_stream(self, symbol_id: str, snapshot_id: int) -> None:
        """While the symbol's diff stream runs, answer a snapshot only once the stream has
        sent a diff newer than it. Binance's snapshots lag its stream, so a client that
        buffers diffs while fetching one (as Binance tells it to) holds diffs newer than the
        snapshot; an emulator answering with the very latest book left that buffer stale, and
        ccxt then handed out a book with no event time."""
        tick = self.tick_s
        quiet_ticks = 5  # ccxt asks for the snapshot as it subscribes: the stream may lag
        newer: int | None = None
        for n in range(int(1.0 / tick)):  # at most a second: a quiet book may not move
            sent = self.stream_progress(symbol_id)
            if sent is None and n >= quiet_ticks:
                return  # nobody streams this book: answer at once
            if newer is None and sent is not None and sent > snapshot_id:
                newer = sent
            elif newer is not None and sent is not None and sent > newer:
                # a second newer diff has left: the first has surely reached the client
                # (loopback does not keep frame and answer in order across two sockets)
                return
            await asyncio.sleep(tick)

    async def trades(self, request: web.Request) -> web.Response:
        symbol_id, source = self.source_of(request)
        limit = _limit(request, 500, TRADES_MAX)
        from_id = _int(request, "fromId")
        batch = source.trades(symbol_id, self.clock.market_ms(), limit, from_id=from_id)
        return web.json_response(protocol.trades_rest(batch))

    async def agg_trades(self, request: web.Request) -> web.Response:
        symbol_id, source = self.source_of(request)
        limit = _limit(request, 500, TRADES_MAX)
        from_id = _int(request, "fromId")
        start, end = _int(request, "startTime"), _int(request, "endTime")
        if start is not None and end is not None:
            if end - start > AGG_WINDOW_MS:
                raise BinanceError(400, -1127, "More than 1 hours between startTime and endTime.")
        elif start is not None:
            end = start + AGG_WINDOW_MS
        elif end is not None:
            start = end - AGG_WINDOW_MS
        batch = source.trades(
            symbol_id, self.clock.market_ms(), limit, from_id=from_id, start=start, end=end
        )
        return web.json_response(protocol.agg_trades_rest(batch))
