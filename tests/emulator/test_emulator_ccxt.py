"""Stock ccxt and ccxt.pro against the emulator's synthetic market: REST and websocket."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import ccxt
import pytest

from ats_pipelines.emulator.faults import FaultConfig
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import Emulator, EmulatorConfigError, check_loopback
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import levels, wait_until
from ats_pipelines.exchange.errors import ExchangeDataError
from ats_pipelines.exchange.parsing import check_binance_frame
from ats_pipelines.exchange.urls import urls_not_on

SYNTH = SyntheticConfig(seed=4, symbol_count=6)


async def start(make_emulator: Any, speed: float = 20.0, **kwargs: Any) -> Emulator:
    return await make_emulator(
        speed=speed, start_ms=FIXED_START_MS, synthetic=SYNTH, birdeye=None, **kwargs
    )


async def test_load_markets_is_spot_only_and_never_leaves_loopback(
    make_emulator: Any, make_ccxt: Any
) -> None:
    emu = await start(make_emulator)
    ex = make_ccxt(emu)
    markets = await ex.load_markets()
    assert sorted(m["id"] for m in markets.values()) == sorted(emu.sources)
    assert all(m["spot"] and m["type"] == "spot" for m in markets.values())
    assert markets["BTC/USDT"]["precision"]["price"] == 0.01
    assert dict(emu.rest.paths) == {"/api/v3/exchangeInfo": 1}
    assert urls_not_on(ex.urls["api"], urlsplit(emu.rest_url).netloc) == []


async def test_klines_follow_binance_paging_rules(make_emulator: Any, make_ccxt: Any) -> None:
    emu = await start(make_emulator)
    ex = make_ccxt(emu)
    await ex.load_markets()
    since = FIXED_START_MS - 2 * 86_400_000
    raw = await ex.publicGetKlines(
        {"symbol": "BTCUSDT", "interval": "1m", "startTime": since, "limit": 1500}
    )
    assert len(raw) == 1000  # the 1000-row cap
    assert raw[0][0] == since and raw[-1][0] == since + 999 * 60_000
    default = await ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "startTime": since})
    assert len(default) == 500
    ohlcv = await ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=24)
    truth = emu.synthetic_market.klines("BTCUSDT", "1h", since, None, 24, emu.clock.now_ms())
    assert ohlcv == [
        [r.open_time, float(r.open), float(r.high), float(r.low), float(r.close), float(r.volume)]
        for r in truth
    ]
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        await ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})
    with pytest.raises(ccxt.BadSymbol):
        await ex.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"})
    with pytest.raises(ccxt.ExchangeError, match="not served by the emulator"):
        await ex.fapiPublicGetExchangeInfo()


async def test_order_book_trades_and_ticker_match_the_market(
    make_emulator: Any, make_ccxt: Any
) -> None:
    emu = await start(make_emulator)
    ex = make_ccxt(emu)
    await ex.load_markets()
    now = emu.clock.pause()
    book = await ex.fetch_order_book("ETH/USDT", 1000)
    truth = emu.synthetic_market.depth("ETHUSDT", 1000, now)
    assert book["nonce"] == truth.last_update_id
    assert book["bids"] == levels(truth.bids) and book["asks"] == levels(truth.asks)
    since = now - 600_000
    trades = await ex.fetch_trades("ETH/USDT", since=since, limit=200)
    oracle = emu.synthetic_market.trades_between("ETHUSDT", since, now + 1)
    assert [t["id"] for t in trades] == [str(i) for i in oracle.ids[:200].tolist()]
    assert [t["side"] for t in trades] == [
        "sell" if m else "buy" for m in oracle.buyer_maker[:200].tolist()
    ]
    ticker = await ex.fetch_ticker("ETH/USDT")
    [last] = emu.synthetic_market.klines("ETHUSDT", "1m", None, None, 1, now)
    assert ticker["last"] == float(last.close)
    assert (ticker["bid"], ticker["ask"]) == (float(truth.bids[0][0]), float(truth.asks[0][0]))


async def test_watch_order_book_stays_equal_to_the_true_book(
    make_emulator: Any, make_ccxt: Any
) -> None:
    emu = await start(make_emulator, speed=100.0)
    ex = make_ccxt(emu)
    symbol, sid = "BTC/USDT", "BTCUSDT"
    await ex.watch_order_book(symbol)
    while emu.publisher.diffs_published[sid] < 2500:
        book = await ex.watch_order_book(symbol)
        assert book["bids"][0][0] < book["asks"][0][0]
    now = emu.clock.pause()
    truth = emu.synthetic_market.depth(sid, 5000, now)
    await wait_until(
        lambda: ex.orderbooks[symbol]["nonce"] == truth.last_update_id,
        "ccxt's book to reach the emulator's last update id",
    )
    book = ex.orderbooks[symbol]
    assert book["bids"] == levels(truth.bids) and book["asks"] == levels(truth.asks)


async def test_a_book_shared_by_two_connections_resolves_on_both(
    make_emulator: Any, make_ccxt: Any
) -> None:
    """ccxt keeps one order book per symbol for all its connections and resolves a watch only
    on the connection whose diff advanced it. The emulator once served every stream's
    listeners in the same order, so one connection was always behind and its
    watch_order_book never returned (ccxt's own ws suite hung on it): connections take turns."""
    emu = await start(make_emulator, speed=50.0)
    ex = make_ccxt(emu)
    symbol = "BTC/USDT"
    await ex.watch_order_book(symbol)  # its own connection (ccxt's ws/1 …)
    other = asyncio.create_task(_keep_watching(ex, [symbol, "ETH/USDT"]))
    try:
        for _ in range(20):
            book = await asyncio.wait_for(ex.watch_order_book(symbol), timeout=10)
            assert book["bids"][0][0] < book["asks"][0][0]
    finally:
        other.cancel()
    assert len({client.url for client in ex.clients.values()}) >= 2


async def _keep_watching(ex: Any, symbols: list[str]) -> None:
    while True:
        await ex.watch_order_book_for_symbols(symbols)


async def test_watch_trades_delivers_every_trade_once(make_emulator: Any, make_ccxt: Any) -> None:
    emu = await start(make_emulator, speed=200.0)
    ex = make_ccxt(emu)
    received: list[dict[str, Any]] = []
    while len(received) < 300:
        received.extend(await ex.watch_trades("SOL/USDT"))
    paused = emu.clock.pause()
    oracle = emu.synthetic_market.trades_between("SOLUSDT", FIXED_START_MS, paused + 1)
    last_id = int(oracle.ids[-1])
    while int(received[-1]["id"]) < last_id:
        received.extend(await ex.watch_trades("SOL/USDT"))
    ids = [int(t["id"]) for t in received]
    assert ids == list(range(ids[0], last_id + 1))
    first = int(oracle.ids.tolist().index(ids[0]))
    assert [t["price"] for t in received] == [float(p) / 100 for p in oracle.price[first:].tolist()]
    assert [t["timestamp"] for t in received] == oracle.ts[first:].tolist()


async def test_kline_stream_closes_with_the_rest_kline(make_emulator: Any, make_ccxt: Any) -> None:
    emu = await start(make_emulator, speed=120.0)
    ex = make_ccxt(emu)
    first = (await ex.watch_ohlcv("BTC/USDT", "1m"))[-1]
    while (await ex.watch_ohlcv("BTC/USDT", "1m"))[-1][0] == first[0]:
        pass
    final = next(c for c in ex.ohlcvs["BTC/USDT"]["1m"] if c[0] == first[0])
    [rest] = await ex.fetch_ohlcv("BTC/USDT", "1m", since=first[0], limit=1)
    assert final == rest


async def test_emulator_survives_bad_client_messages_and_serves_combined_streams(
    make_emulator: Any,
) -> None:
    emu = await start(make_emulator)
    url = emu.ws_url.replace("/ws", "/stream?streams=btcusdt@trade/ethusdt@depth@100ms")
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        replies = []
        for bad in (
            "garbage",
            "[1,2]",
            '{"method":"SUBSCRIBE","params":"x","id":1}',
            '{"method":"SUBSCRIBE","params":["nope@trade"],"id":2}',
            '{"method":"FLY","id":3}',
        ):
            await ws.send_str(bad)
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":4}')
        streams: set[str] = set()
        while len(replies) < 6 or len(streams) < 2:
            msg = json.loads((await ws.receive()).data)
            if "stream" in msg:
                check_binance_frame(json.dumps(msg))
                streams.add(msg["stream"])
            else:
                replies.append(msg)
    assert sum("code" in r or "error" in r for r in replies) == 5
    assert replies[-1] == {"result": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 4}
    assert streams == {"btcusdt@trade", "ethusdt@depth@100ms"}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.com"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(EmulatorConfigError, match="loopback only"):
        check_loopback(host)


async def test_binds_to_loopback_only(make_emulator: Any) -> None:
    emu = await start(make_emulator)
    assert emu._runner is not None
    assert [a[0] for a in emu._runner.addresses] == ["127.0.0.1"]
    assert check_loopback("::1") == "::1" and check_loopback("localhost") == "127.0.0.1"


async def test_clock_jump_moves_server_time_and_trades_never_repeat(
    make_emulator: Any, make_ccxt: Any
) -> None:
    emu = await start(make_emulator, speed=20.0)
    ex = make_ccxt(emu)
    before_trades = await ex.watch_trades("BTC/USDT")
    before = await ex.fetch_time()
    emu.clock.jump(-20_000)  # 20 s back: the market stands still for one wall second
    after = await ex.fetch_time()
    assert after < before - 15_000
    later = await ex.watch_trades("BTC/USDT")
    assert int(later[0]["id"]) == int(before_trades[-1]["id"]) + 1
    assert later[0]["timestamp"] >= before_trades[-1]["timestamp"]
    emu.clock.jump(+600_000)  # forward: the ten minutes in between are traded at once
    caught_up: list[dict[str, Any]] = []
    while not caught_up or caught_up[-1]["timestamp"] < after + 500_000:
        caught_up.extend(await ex.watch_trades("BTC/USDT"))
    ids = [int(t["id"]) for t in later + caught_up]
    assert ids == list(range(ids[0], ids[-1] + 1))


async def test_scheduled_faults_reach_the_wire(make_emulator: Any) -> None:
    faults = FaultConfig(
        duplicate_every=5,
        reorder_every=7,
        gap_every=10,
        malformed_every=25,
        time_jump_at_s=0.0,
        time_jump_ms=3_600_000,
        drop_at_s=(1.0,),
    )
    emu = await start(make_emulator, speed=100.0, faults=faults)
    url = emu.ws_url + "/btcusdt@trade/btcusdt@depth@100ms"
    trade_ids: list[int] = []
    depth: list[tuple[int, int]] = []
    bad = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                event = check_binance_frame(msg.data)
            except ExchangeDataError:
                bad += 1
                continue
            assert isinstance(event, dict)
            if event.get("e") == "trade":
                trade_ids.append(event["t"])
            elif event.get("e") == "depthUpdate":
                depth.append((event["U"], event["u"]))
    assert emu.faults.counts["ws_dropped"] == 1  # the connection ended by the scheduled drop
    assert emu.faults.counts["time_jumps"] == 1
    assert emu.clock.now_ms() > FIXED_START_MS + 3_600_000
    # (a fault queued just before the drop may not have reached the wire)
    assert 0 < bad <= emu.faults.counts["malformed"]
    assert len(trade_ids) > len(set(trade_ids))  # duplicates
    assert any(b < a for a, b in itertools.pairwise(trade_ids))  # out of order
    assert sorted(set(trade_ids)) == list(range(min(trade_ids), max(trade_ids) + 1))
    gaps = sum(b[0] != a[1] + 1 for a, b in itertools.pairwise(depth))
    assert 0 < gaps <= emu.faults.counts["diffs_skipped"]
