"""Validation of exchange payloads: good data passes, each broken rule is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ats_pipelines.emulator.faults import MALFORMED_FRAMES
from ats_pipelines.exchange.errors import ExchangeDataError
from ats_pipelines.exchange.parsing import (
    candle_rows,
    check_binance_frame,
    order_book_row,
    trade_row,
)

GOOD = [1_700_000_040_000, 10.0, 11.0, 9.0, 10.5, 3.0]


@pytest.fixture(scope="module")
def ccxt_samples(testdata: Path) -> dict[str, Any]:
    return json.loads((testdata / "ccxt/binance.response.marketdata.json").read_text())["methods"]


def test_ccxt_parsed_samples_pass(ccxt_samples: dict[str, Any]) -> None:
    spot_ohlcv = next(s for s in ccxt_samples["fetchOHLCV"] if s["input"][0] == "BTC/USDT")
    rows = candle_rows(
        "binance", "BTC/USDT", spot_ohlcv["input"][1], spot_ohlcv["parsedResponse"], "rest"
    )
    assert [r.ts for r in rows] == [c[0] for c in spot_ohlcv["parsedResponse"]]
    [trade_sample] = ccxt_samples["fetchTrades"]
    rows_t = [trade_row("binance", t, "rest") for t in trade_sample["parsedResponse"]]
    assert rows_t[0].trade_id == str(trade_sample["parsedResponse"][0]["id"])
    for sample in ccxt_samples["fetchOrderBook"]:
        book = sample["parsedResponse"]
        row = order_book_row("binance", book["symbol"], book, "rest", ts=1)
        assert row.sequence == book["nonce"]


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        ([1_700_000_040_001, *GOOD[1:]], "ohlcv.aligned"),
        (["x", *GOOD[1:]], "ohlcv.timestamp"),
        ([GOOD[0], 10.0, 8.0, 9.0, 10.0, 1.0], "ohlcv.high_low"),
        ([GOOD[0], 12.0, 11.0, 9.0, 10.0, 1.0], "ohlcv.bounds"),
        ([GOOD[0], 0.0, 11.0, 0.0, 10.0, 1.0], "ohlcv.prices_positive"),
        ([GOOD[0], 10.0, 11.0, 9.0, 10.0, -1.0], "ohlcv.volume_nonnegative"),
        ([GOOD[0], "abc", 11.0, 9.0, 10.0, 1.0], "ohlcv.numeric"),
        ([GOOD[0], float("nan"), 11.0, 9.0, 10.0, 1.0], "ohlcv.numeric"),
        ([GOOD[0], 10.0], "ohlcv.shape"),
    ],
)
def test_bad_candles_are_rejected_by_rule(row: list[Any], rule: str) -> None:
    with pytest.raises(ExchangeDataError) as info:
        candle_rows("binance", "BTC/USDT", "1m", [row], "rest")
    assert info.value.rule == rule
    assert "binance BTC/USDT 1m candle #0" in str(info.value) and rule in str(info.value)


def test_candles_must_increase() -> None:
    with pytest.raises(ExchangeDataError, match=r"candle #1 .*rule ohlcv.increasing"):
        candle_rows("binance", "BTC/USDT", "1m", [GOOD, GOOD], "rest")


TRADE = {
    "id": "1",
    "symbol": "BTC/USDT",
    "timestamp": 1_700_000_000_000,
    "price": 10.0,
    "amount": 2.0,
    "cost": 20.0,
    "side": "buy",
}


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"price": 0.0}, "trade.price_positive"),
        ({"amount": -1.0}, "trade.amount_positive"),
        ({"price": None}, "trade.price_positive"),
        ({"side": "long"}, "trade.side"),
        ({"id": None}, "trade.id"),
        ({"timestamp": None}, "trade.timestamp"),
        ({"symbol": "BTCUSDT"}, "trade.symbol"),
    ],
)
def test_bad_trades_are_rejected_by_rule(change: dict[str, Any], rule: str) -> None:
    assert trade_row("binance", TRADE, "ws").price == 10.0
    with pytest.raises(ExchangeDataError) as info:
        trade_row("binance", {**TRADE, **change}, "ws", index=4)
    assert info.value.rule == rule and "trade #4" in str(info.value)


@pytest.mark.parametrize(
    ("book", "rule"),
    [
        ({"bids": [[10.0, 1.0]], "asks": [[10.0, 1.0]]}, "book.uncrossed"),
        ({"bids": [[9.0, 1.0], [9.5, 1.0]], "asks": []}, "book.sorted"),
        ({"bids": [[9.0, 0.0]], "asks": []}, "book.positive"),
        ({"bids": "x", "asks": []}, "book.shape"),
    ],
)
def test_bad_books_are_rejected_by_rule(book: dict[str, Any], rule: str) -> None:
    with pytest.raises(ExchangeDataError) as info:
        order_book_row("binance", "BTC/USDT", {**book, "nonce": 5}, "ws", ts=1)
    assert info.value.rule == rule


def test_every_recorded_binance_frame_passes(testdata: Path) -> None:
    frames = [
        line.split(": ", 1)[1]
        for line in (testdata / "cryptofeed/BINANCE.ws.1.0").read_text().splitlines()
        if line.strip() and not line.startswith("wss://")
    ]
    assert len(frames) == 265
    for frame in frames:
        check_binance_frame(frame)


@pytest.mark.parametrize(
    ("frame", "rule"),
    zip(MALFORMED_FRAMES, ["ws.json", "ws.json", "ws.trade_time", "ws.depth_ids"], strict=True),
)
def test_the_emulators_malformed_frames_are_rejected_by_rule(frame: str, rule: str) -> None:
    with pytest.raises(ExchangeDataError) as info:
        check_binance_frame(frame, "binance ws frame")
    assert info.value.rule == rule
    assert frame[:20] in str(info.value)  # the message names the frame


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        ('{"e":"trade","E":1,"T":1,"s":"X","t":1,"p":"0","q":"1","m":true}', "ws.trade_price"),
        ('{"e":"trade","E":1,"T":1,"s":"X","t":1,"p":"1","q":"1","m":"yes"}', "ws.trade_maker"),
        ('{"e":"depthUpdate","E":1,"s":"X","U":5,"u":4,"b":[],"a":[]}', "ws.depth_ids"),
        ('{"e":"depthUpdate","E":1,"s":"X","U":4,"u":5,"b":[["1"]],"a":[]}', "ws.depth_levels"),
        (
            '{"e":"kline","E":1,"s":"X","k":{"t":1,"T":2,"o":"1","h":"1","l":"x","c":"1","v":"0"}}',
            "ws.kline",
        ),
        ('"just a string"', "ws.object"),
    ],
)
def test_wrong_fields_are_named(frame: str, rule: str) -> None:
    with pytest.raises(ExchangeDataError) as info:
        check_binance_frame(frame)
    assert info.value.rule == rule
