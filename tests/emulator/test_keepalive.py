"""Server pings, silent clients dropped, and the (shortened) 24-hour connection limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ats_pipelines.emulator.keepalive import WsLimits
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.testing import wait_until

MakeEmulator = Callable[..., Awaitable[Emulator]]


async def test_ccxt_answers_pings_and_stays_connected(
    make_emulator: MakeEmulator, make_ccxt: Callable[..., Any]
) -> None:
    emulator = await make_emulator(ws_limits=WsLimits(ping_interval_s=0.1, pong_timeout_s=0.5))
    exchange = make_ccxt(emulator)
    await exchange.load_markets()
    await exchange.watch_trades("BTC/USDT")
    keeper = next(iter(emulator.keepalives.values()))
    await wait_until(lambda: keeper.pings_sent >= 8, "eight pings")  # 0.8 s > the timeout
    trades = await exchange.watch_trades("BTC/USDT")
    assert trades
    assert keeper.closed_for is None
    assert len(emulator.keepalives) == 1  # never reconnected


async def test_a_client_that_never_pongs_is_dropped(make_emulator: MakeEmulator) -> None:
    emulator = await make_emulator(ws_limits=WsLimits(ping_interval_s=0.1, pong_timeout_s=0.4))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.ws_url + "/btcusdt@trade", autoping=False) as ws,
    ):
        pings = 0
        while True:  # read everything, answer nothing
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    keeper = next(iter(emulator.keepalives.values()))
    assert keeper.closed_for == "pong_timeout"
    assert pings >= 2


async def test_connections_are_closed_at_the_age_limit(make_emulator: MakeEmulator) -> None:
    emulator = await make_emulator(ws_limits=WsLimits(max_age_s=0.5))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.ws_url + "/btcusdt@trade") as ws,
    ):
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        replies = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type == aiohttp.WSMsgType.TEXT:
                replies.append(msg.data)
            else:
                break
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    keeper = next(iter(emulator.keepalives.values()))
    assert keeper.closed_for == "max_age"
    assert '{"result": ["btcusdt@trade"], "id": 1}' in replies  # served until then


async def test_ccxt_reconnects_after_the_age_limit_and_keeps_getting_trades(
    make_emulator: MakeEmulator, make_ccxt: Callable[..., Any]
) -> None:
    emulator = await make_emulator(ws_limits=WsLimits(max_age_s=0.3))
    exchange = make_ccxt(emulator)
    await exchange.load_markets()
    seen: list[int] = []
    while len(emulator.keepalives) < 3:  # two forced reconnects
        try:
            trades = await asyncio.wait_for(exchange.watch_trades("BTC/USDT"), 10)
        except Exception as exc:  # ccxt reports the server's close
            assert "1001" in str(exc) or "closed" in str(exc).lower(), exc
            continue
        seen.extend(int(t["id"]) for t in trades)
    assert seen == sorted(seen)
    assert sum(k.closed_for == "max_age" for k in emulator.keepalives.values()) >= 2
