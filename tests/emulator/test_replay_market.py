"""Replay of the recorded data in ../shared/testdata, through the emulator and stock ccxt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from ats_pipelines.emulator.replay import ReplayMarket
from ats_pipelines.emulator.replay_data import load_testdata
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.testing import levels, wait_until


@pytest.fixture(scope="module")
def recorded(testdata: Path) -> dict[str, Any]:
    return load_testdata(testdata)


def source_candles(testdata: Path, name: str) -> list[list[float]]:
    if name.endswith(".json"):
        return [[int(r[0]), *map(float, r[1:])] for r in json.loads((testdata / name).read_text())]
    frame = pl.read_ipc(testdata / name)
    return [
        [int(ts), o, h, lo, c, v]
        for ts, o, h, lo, c, v in zip(
            frame["date"].dt.epoch("ms").to_list(),
            *(frame[col].to_list() for col in ("open", "high", "low", "close", "volume")),
            strict=True,
        )
    ]


def test_recorded_values_survive_the_wire_format(recorded: dict[str, Any], testdata: Path) -> None:
    rows = recorded["XRPETH"].candles["1m"]
    wire = [
        [r.open_time, *(float(x) for x in (r.open, r.high, r.low, r.close, r.volume))] for r in rows
    ]
    assert wire == source_candles(testdata, "freqtrade/XRP_ETH-1m.feather")
    assert len(recorded["UNITTESTBTC"].candles["1m"]) == 13_681
    assert len(recorded["XRPETH"].trades.ids) == 12_477
    assert set(recorded) >= {
        "XRPETH",
        "ETHBTC",
        "UNITTESTBTC",
        "BTCUSDT",
        "NKNUSDT",
        "BLZETH",
        "LRCBTC",
        "RUNEEUR",
    }


def test_replayed_book_is_snapshot_plus_recorded_diffs(
    recorded: dict[str, Any], testdata: Path
) -> None:
    market = ReplayMarket(recorded, speed=0.0, burst=7)
    market.start_stream("NKNUSDT", 0)
    drained = 0
    while not market.finished("NKNUSDT"):
        drained += len(market.drain_depth("NKNUSDT", 0))
    # the oracle: the file's own snapshot with the file's own diffs applied here
    lines = (testdata / "cryptofeed/BINANCE.http.0.0").read_text().splitlines()
    snap = json.loads(next(x for x in lines if "NKNUSDT" in x).split(": ", 1)[1])
    book = {
        "bids": {float(p): float(q) for p, q in snap["bids"]},
        "asks": {float(p): float(q) for p, q in snap["asks"]},
    }
    last = snap["lastUpdateId"]
    applied = 0
    for line in (testdata / "cryptofeed/BINANCE.ws.1.0").read_text().splitlines():
        if '"depthUpdate"' not in line or '"NKNUSDT"' not in line:
            continue
        data = json.loads(line.split(": ", 1)[1])["data"]
        if data["u"] <= snap["lastUpdateId"]:
            continue
        for side, key in (("bids", "b"), ("asks", "a")):
            for p, q in data[key]:
                if float(q) == 0:
                    book[side].pop(float(p), None)
                else:
                    book[side][float(p)] = float(q)
        last = data["u"]
        applied += 1
    assert drained == applied > 100
    truth = market.depth("NKNUSDT", 5000, 0)
    assert truth.last_update_id == last
    assert levels(truth.bids) == [[p, q] for p, q in sorted(book["bids"].items(), reverse=True)]
    assert levels(truth.asks) == [[p, q] for p, q in sorted(book["asks"].items())]


async def test_ccxt_pages_through_gapped_recorded_klines(
    make_emulator: Any, make_ccxt: Any, testdata: Path
) -> None:
    emu: Emulator = await make_emulator(replay_dir=testdata, synthetic=None, birdeye=None)
    ex = make_ccxt(emu)
    expected = source_candles(testdata, "freqtrade/UNITTEST_BTC-1m.json")
    got: list[list[Any]] = []
    since, pages = expected[0][0], 0
    while True:  # the plain ccxt way: since = last + 1 bar, 1000 rows a page
        page = await ex.fetch_ohlcv("UNITTEST/BTC", "1m", since=since, limit=1000)
        if not page:
            break
        got.extend(page)
        since, pages = page[-1][0] + 60_000, pages + 1
    assert pages == 14
    assert len(got) == len(expected) == 13_681
    assert got == expected


async def test_ccxt_fetches_recorded_trades(
    make_emulator: Any, make_ccxt: Any, testdata: Path
) -> None:
    emu: Emulator = await make_emulator(replay_dir=testdata, synthetic=None, birdeye=None)
    ex = make_ccxt(emu)
    source = pl.read_parquet(testdata / "freqtrade/XRP_ETH-trades.parquet")
    since = int(source["timestamp"][0])
    trades = await ex.fetch_trades("XRP/ETH", since=since, limit=1000)
    expected = source.filter(pl.col("timestamp") <= since + 3_600_000).head(1000)
    assert len(trades) == expected.height > 100
    assert [t["id"] for t in trades] == expected["id"].to_list()
    assert [t["timestamp"] for t in trades] == expected["timestamp"].to_list()
    assert [t["price"] for t in trades] == expected["price"].to_list()
    assert [t["amount"] for t in trades] == expected["amount"].to_list()
    assert [t["side"] for t in trades] == expected["side"].to_list()


async def test_ccxt_pro_rebuilds_the_replayed_book(
    make_emulator: Any, make_ccxt: Any, testdata: Path
) -> None:
    emu: Emulator = await make_emulator(
        replay_dir=testdata, synthetic=None, birdeye=None, speed=10.0
    )
    ex = make_ccxt(emu)
    first = await ex.watch_order_book("NKN/USDT")
    start_nonce = first["nonce"]
    assert emu.replay is not None
    await wait_until(
        lambda: emu.replay is not None and emu.replay.finished("NKNUSDT"),
        "the NKNUSDT capture to finish replaying",
    )
    truth = emu.replay.depth("NKNUSDT", 500, 0)
    await wait_until(
        lambda: ex.orderbooks["NKN/USDT"]["nonce"] == truth.last_update_id,
        "ccxt's book to reach the last recorded update id",
    )
    assert truth.last_update_id > start_nonce  # diffs were applied over the wire
    book = ex.orderbooks["NKN/USDT"]
    # the recorded snapshot has 1000 asks: compare the levels a 1000-level snapshot covers
    assert book["bids"][:500] == levels(truth.bids)
    assert book["asks"][:500] == levels(truth.asks)


async def test_replay_streams_recorded_trades_and_candles_as_fast_as_possible(
    make_emulator: Any, testdata: Path
) -> None:
    emu: Emulator = await make_emulator(
        replay_dir=testdata, synthetic=None, birdeye=None, speed=0.0
    )
    trades = pl.read_parquet(testdata / "freqtrade/XRP_ETH-trades.parquet")
    candles = source_candles(testdata, "freqtrade/XRP_ETH-5m.feather")
    got_trades: list[dict[str, Any]] = []
    got_klines: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emu.ws_url + "/xrpeth@trade/xrpeth@kline_5m") as ws,
    ):
        while len(got_trades) < 2000 or len(got_klines) < 50:
            event = json.loads((await ws.receive()).data)
            (got_trades if event["e"] == "trade" else got_klines).append(event)
    n = len(got_trades)
    assert [e["t"] for e in got_trades] == [int(i) for i in trades["id"][:n].to_list()]
    assert [float(e["p"]) for e in got_trades] == trades["price"][:n].to_list()
    assert [e["T"] for e in got_trades] == trades["timestamp"][:n].to_list()
    assert [e["m"] for e in got_trades] == [s == "sell" for s in trades["side"][:n].to_list()]
    k = len(got_klines)
    assert all(e["k"]["x"] for e in got_klines)  # recorded candles arrive closed
    assert [[e["k"]["t"], *(float(e["k"][f]) for f in "ohlcv")] for e in got_klines] == candles[:k]
