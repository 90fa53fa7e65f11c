"""The emulator: Binance spot REST + websocket (and Birdeye) on loopback, in one aiohttp app.

Clients change nothing but their hosts: REST under ``http://127.0.0.1:<port>/api/v3/...``,
streams under ``ws://127.0.0.1:<port>/ws`` (raw, ``SUBSCRIBE`` messages or ``/ws/<stream>``)
and ``/stream?streams=...`` (combined, wrapped in ``{"stream":..,"data":..}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

from ats_pipelines.emulator.birdeye import BirdeyeConfig, BirdeyeEmulator
from ats_pipelines.emulator.clock import EmulatorClock
from ats_pipelines.emulator.faults import FaultConfig, Faults
from ats_pipelines.emulator.keepalive import KeepAlive, WsLimits
from ats_pipelines.emulator.publisher import Publisher
from ats_pipelines.emulator.ratelimit import RateLimitConfig
from ats_pipelines.emulator.replay import ReplayMarket
from ats_pipelines.emulator.rest import BinanceRest
from ats_pipelines.emulator.source import MarketSource
from ats_pipelines.emulator.streams import Connection, StreamError, Subscriptions, parse_stream
from ats_pipelines.emulator.synthetic import SyntheticConfig, SyntheticMarket

log = logging.getLogger(__name__)


class EmulatorConfigError(ValueError):
    """The emulator was asked for something it refuses to do (e.g. a non-loopback host)."""


def check_loopback(host: str) -> str:
    """The address to bind: loopback only, anything else is refused with a clear error."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise EmulatorConfigError(
            f"emulator host {host!r} is not an IP address; it binds to "
            "loopback only (127.0.0.1 or ::1)"
        ) from None
    if not address.is_loopback:
        raise EmulatorConfigError(
            f"emulator host {host} is not a loopback address; it binds to "
            "loopback only (127.0.0.1 or ::1) so nothing outside this "
            "machine can reach it"
        )
    return host


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulator run. ``speed`` scales exchange time (replays follow it); ``speed=0``
    replays as fast as possible (and then the synthetic market runs at 1x)."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    speed: float = 1.0
    start_ms: int | None = None  # exchange time at start; default: the wall clock
    synthetic: SyntheticConfig | None = field(default_factory=SyntheticConfig)
    replay_dir: Path | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    birdeye: BirdeyeConfig | None = field(default_factory=BirdeyeConfig)
    tick_s: float = 0.01  # publisher period (wall seconds)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    ws_limits: WsLimits = field(default_factory=WsLimits)


class Emulator:
    """Start with ``await emulator.start()`` (or ``async with``); stop with ``stop()``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config = config or EmulatorConfig()
        self.host = check_loopback(config.host)
        if config.speed < 0:
            raise EmulatorConfigError(f"speed {config.speed} must be >= 0")
        self.clock = EmulatorClock(config.start_ms, config.speed or 1.0)
        self.faults = Faults(config.faults)
        self.synthetic: SyntheticMarket | None = None
        self.replay: ReplayMarket | None = None
        self.sources: dict[str, MarketSource] = {}
        if config.replay_dir is not None:
            self.replay = ReplayMarket.from_testdata(
                config.replay_dir, speed=1.0 if config.speed else 0.0
            )
            self.sources.update({s.symbol_id: self.replay for s in self.replay.specs()})
        if config.synthetic is not None:
            self.synthetic = SyntheticMarket(config.synthetic, self.clock.start_ms)
            for spec in self.synthetic.specs():  # recorded data wins a clash of ids
                self.sources.setdefault(spec.symbol_id, self.synthetic)
        if not self.sources:
            raise EmulatorConfigError(
                "emulator has no market: enable the synthetic market or give a replay directory"
            )
        self.subs = Subscriptions()
        self.publisher = Publisher(self.sources, self.subs, self.clock, self.faults, config.tick_s)
        self.rest = BinanceRest(self.sources, self.clock, self.faults, config.rate_limit)
        self.rest.stream_progress = self._depth_progress
        self.rest.tick_s = config.tick_s
        self.birdeye = BirdeyeEmulator(config.birdeye, self.clock) if config.birdeye else None
        self.port = config.port
        self._runner: web.AppRunner | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._conn_ids = itertools.count(1)
        self.keepalives: dict[int, KeepAlive] = {}  # per connection id, closed ones kept
        self.loop: asyncio.AbstractEventLoop | None = None  # set when run in a thread

    # -- addresses -----------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """Base URL replacing ``https://api.binance.com``."""
        return f"http://{self._netloc}"

    @property
    def ws_url(self) -> str:
        """Replaces ``wss://stream.binance.com:9443/ws``."""
        return f"ws://{self._netloc}/ws"

    @property
    def birdeye_url(self) -> str:
        """Replaces ``https://public-api.birdeye.so``."""
        return f"http://{self._netloc}"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.rest.middleware])
        app.add_routes(self.rest.routes())
        app.add_routes(
            [
                web.get("/ws", self._ws),
                web.get("/ws/{tail:.*}", self._ws),
                web.get("/stream", self._ws),
            ]
        )
        if self.birdeye is not None:
            app.add_routes(self.birdeye.routes())
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._publisher_task = asyncio.get_running_loop().create_task(self.publisher.run())
        log.info(
            "event=emulator_started rest=%s ws=%s symbols=%s speed=%s faults=%s",
            self.rest_url,
            self.ws_url,
            len(self.sources),
            self.config.speed,
            self.config.faults.describe(),
        )

    async def stop(self) -> None:
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher_task
            self._publisher_task = None
        for conn in list(self.subs.connections):
            conn.sender.cancel()  # a backlog is not worth sending on the way out
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("event=emulator_stopped port=%s", self.port)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control (tests, faults) -------------------------------------------------------------

    @property
    def synthetic_market(self) -> SyntheticMarket:
        """The synthetic market (the oracle of trades, klines and books); error if off."""
        if self.synthetic is None:
            raise EmulatorConfigError("this emulator runs without the synthetic market")
        return self.synthetic

    def source(self, symbol_id: str) -> MarketSource:
        return self.sources[symbol_id]

    def _depth_progress(self, symbol_id: str) -> int | None:
        """The newest update id the symbol's diff stream has sent (-1: none yet), or None if
        no client watches that stream."""
        streams = [s for s in self.subs.streams_of(symbol_id) if s.kind in ("depth", "depth100")]
        if not streams:
            return None
        listeners = {c for s in streams for c in self.subs.by_stream.get(s, ())}
        if any(c.queue.qsize() for c in listeners):
            return -1  # frames still queued: the newest diff has not left yet
        return self.publisher.last_diff_id.get(symbol_id, -1)

    def drop_connections(self) -> int:
        """Abort every websocket connection now (the dropped-connection fault)."""
        return self.publisher.drop_all()

    # -- websocket -----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        # pings and pongs by hand: the server pings and must see the client's pongs
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(
            ws, request, request.path == "/stream", self.faults.latency_s, next(self._conn_ids)
        )
        self.subs.connections.add(conn)
        keeper = KeepAlive(ws, self.config.ws_limits, conn.conn_id, conn.abort)
        self.keepalives[conn.conn_id] = keeper
        initial = (
            request.query.get("streams", "").split("/")
            if conn.combined
            else request.match_info.get("tail", "").split("/")
        )
        for name in filter(None, initial):
            with contextlib.suppress(StreamError):  # ccxt opens /ws/<n>: not a stream name
                self._subscribe(conn, name)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = self._control(conn, msg.data)
                    if reply is not None:
                        conn.push_raw([reply])
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    keeper.pong()
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            keeper.cancel()
            for symbol_id in self.subs.drop(conn):
                self.sources[symbol_id].stop_stream(symbol_id)
            conn.queue.put_nowait(None)
        return ws

    def _subscribe(self, conn: Connection, name: str) -> None:
        stream = parse_stream(name, set(self.sources))
        if stream.symbol_id not in self.sources:  # the all-market streams
            self.subs.add(conn, stream)
        elif self.subs.add(conn, stream):
            self.sources[stream.symbol_id].start_stream(stream.symbol_id, self.clock.market_ms())

    def _control(self, conn: Connection, text: str) -> str | None:
        """Answer one client message (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, ...)."""
        try:
            request = json.loads(text)
        except ValueError as exc:
            return json.dumps({"code": 3, "msg": f"Invalid JSON: {exc}"})
        if not isinstance(request, dict):
            return json.dumps({"code": 3, "msg": "Invalid JSON: expected an object"})
        req_id = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list):
                return json.dumps(
                    {
                        "error": {"code": 2, "msg": "Invalid request: params must be a list"},
                        "id": req_id,
                    }
                )
            for name in params:
                if method == "SUBSCRIBE":
                    try:
                        self._subscribe(conn, name)
                    except StreamError as exc:
                        return json.dumps(
                            {"error": {"code": 2, "msg": f"Invalid request: {exc}"}, "id": req_id}
                        )
                else:
                    orphan = self.subs.remove(conn, name)
                    if orphan in self.sources:
                        self.sources[orphan].stop_stream(orphan)
            return json.dumps({"result": None, "id": req_id})
        if method == "LIST_SUBSCRIPTIONS":
            return json.dumps({"result": sorted(conn.streams), "id": req_id})
        if method == "SET_PROPERTY":
            return json.dumps({"result": None, "id": req_id})
        if method == "GET_PROPERTY":
            return json.dumps({"result": False, "id": req_id})
        return json.dumps(
            {"error": {"code": 0, "msg": f"Unknown property {method!r}"}, "id": req_id}
        )
