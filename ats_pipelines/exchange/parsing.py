"""Validation of exchange payloads into clean rows.

Every check has a rule name (``ohlcv.high_low``, ``trade.price_positive``, ``ws.json``, ...);
a payload that breaks one raises :class:`ExchangeDataError` naming the payload (exchange, symbol,
row number or websocket frame) and the rule. Callers quarantine what is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from ats_pipelines.exchange.errors import ExchangeDataError
from ats_pipelines.exchange.rows import CandleRow, OrderBookRow, TradeRow
from ats_pipelines.lib.timeframes import is_aligned, parse_timeframe

_FRAME_PREVIEW = 160


def _number(value: Any, where: str, rule: str, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ExchangeDataError(where, rule, f"{field}={value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExchangeDataError(where, rule, f"{field}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ExchangeDataError(where, rule, f"{field}={value!r} is not finite")
    return number


def candle_rows(
    exchange: str, symbol: str, timeframe: str, ohlcv: Sequence[Any], source: str
) -> list[CandleRow]:
    """ccxt OHLCV lists ``[ts, o, h, l, c, v]`` -> rows; strictly increasing, aligned times."""
    parse_timeframe(timeframe)  # raises on a timeframe the platform does not know
    rows: list[CandleRow] = []
    previous: int | None = None
    for i, raw in enumerate(ohlcv):
        where = f"{exchange} {symbol} {timeframe} candle #{i} {raw!r}"
        if not isinstance(raw, list | tuple) or len(raw) < 6:
            raise ExchangeDataError(
                where, "ohlcv.shape", "expected [ts, open, high, low, close, volume]"
            )
        ts = raw[0]
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise ExchangeDataError(where, "ohlcv.timestamp", f"ts={ts!r} is not epoch ms")
        if not is_aligned(ts, timeframe):
            raise ExchangeDataError(
                where, "ohlcv.aligned", f"ts={ts} is not aligned to {timeframe}"
            )
        if previous is not None and ts <= previous:
            raise ExchangeDataError(
                where, "ohlcv.increasing", f"ts={ts} does not follow {previous}"
            )
        o, h, lo, c, v = (
            _number(raw[k], where, "ohlcv.numeric", name)
            for k, name in enumerate(("open", "high", "low", "close", "volume"), 1)
        )
        if min(o, h, lo, c) <= 0:
            raise ExchangeDataError(where, "ohlcv.prices_positive", "a price is <= 0")
        if h < lo:
            raise ExchangeDataError(where, "ohlcv.high_low", f"high {h} < low {lo}")
        if h < max(o, c) or lo > min(o, c):
            raise ExchangeDataError(where, "ohlcv.bounds", "open/close outside [low, high]")
        if v < 0:
            raise ExchangeDataError(where, "ohlcv.volume_nonnegative", f"volume {v} < 0")
        rows.append(CandleRow(exchange, symbol, timeframe, ts, o, h, lo, c, v, source))
        previous = ts
    return rows


def trade_row(exchange: str, trade: dict[str, Any], source: str, index: int = 0) -> TradeRow:
    """A ccxt unified trade -> row."""
    symbol = trade.get("symbol")
    where = f"{exchange} {symbol} trade #{index} id={trade.get('id')!r}"
    if not isinstance(symbol, str) or "/" not in symbol:
        raise ExchangeDataError(where, "trade.symbol", f"symbol={symbol!r} is not unified")
    trade_id = trade.get("id")
    if trade_id is None or str(trade_id) == "":
        raise ExchangeDataError(where, "trade.id", "trade has no id")
    ts = trade.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
        raise ExchangeDataError(where, "trade.timestamp", f"timestamp={ts!r} is not epoch ms")
    price = _number(trade.get("price"), where, "trade.price_positive", "price")
    amount = _number(trade.get("amount"), where, "trade.amount_positive", "amount")
    if price <= 0:
        raise ExchangeDataError(where, "trade.price_positive", f"price {price} <= 0")
    if amount <= 0:
        raise ExchangeDataError(where, "trade.amount_positive", f"amount {amount} <= 0")
    side = trade.get("side")
    if side not in ("buy", "sell", None):
        raise ExchangeDataError(where, "trade.side", f"side={side!r} is not buy/sell")
    cost = trade.get("cost")
    cost_value = None if cost is None else _number(cost, where, "trade.cost", "cost")
    return TradeRow(exchange, symbol, ts, str(trade_id), price, amount, cost_value, side, source)


def trade_rows(exchange: str, trades: Sequence[dict[str, Any]], source: str) -> list[TradeRow]:
    return [trade_row(exchange, t, source, i) for i, t in enumerate(trades)]


def order_book_row(
    exchange: str,
    symbol: str,
    book: dict[str, Any],
    source: str,
    depth: int | None = None,
    ts: int | None = None,
) -> OrderBookRow:
    """A ccxt order book -> top-``depth`` row; sides sorted, sizes positive, uncrossed."""
    where = f"{exchange} {symbol} order book nonce={book.get('nonce')!r}"
    sides: list[tuple[list[float], list[float]]] = []
    for name, descending in (("bids", True), ("asks", False)):
        levels = book.get(name)
        if not isinstance(levels, list):
            raise ExchangeDataError(where, "book.shape", f"{name} is not a list")
        prices: list[float] = []
        sizes: list[float] = []
        for j, level in enumerate(levels[:depth] if depth else levels):
            if not isinstance(level, list | tuple) or len(level) < 2:
                raise ExchangeDataError(where, "book.shape", f"{name}[{j}]={level!r}")
            p = _number(level[0], where, "book.numeric", f"{name}[{j}].price")
            q = _number(level[1], where, "book.numeric", f"{name}[{j}].size")
            if p <= 0 or q <= 0:
                raise ExchangeDataError(where, "book.positive", f"{name}[{j}]={level!r}")
            if prices and (p >= prices[-1] if descending else p <= prices[-1]):
                raise ExchangeDataError(where, "book.sorted", f"{name}[{j}] price {p} out of order")
            prices.append(p)
            sizes.append(q)
        sides.append((prices, sizes))
    (bp, bs), (ap, asz) = sides
    if bp and ap and bp[0] >= ap[0]:
        raise ExchangeDataError(where, "book.uncrossed", f"best bid {bp[0]} >= best ask {ap[0]}")
    stamp = ts if ts is not None else book.get("timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise ExchangeDataError(where, "book.timestamp", f"timestamp={stamp!r} is not epoch ms")
    nonce = book.get("nonce")
    return OrderBookRow(
        exchange, symbol, stamp, bp, bs, ap, asz, nonce if isinstance(nonce, int) else None, source
    )


# -- raw Binance websocket frames ----------------------------------------------------------------


def _check_int(data: dict[str, Any], key: str, where: str, rule: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExchangeDataError(where, rule, f"{key}={value!r} is not an integer")
    return value


def _check_decimal(
    data: dict[str, Any], key: str, where: str, rule: str, positive: bool = True
) -> float:
    value = data.get(key)
    if not isinstance(value, str):
        raise ExchangeDataError(where, rule, f"{key}={value!r} is not a decimal string")
    number = _number(value, where, rule, key)
    if number < 0 or (positive and number == 0):
        raise ExchangeDataError(where, rule, f"{key}={value!r} is out of range")
    return number


def _check_levels(data: dict[str, Any], key: str, where: str) -> None:
    levels = data.get(key)
    if not isinstance(levels, list):
        raise ExchangeDataError(where, "ws.depth_levels", f"{key}={levels!r} is not a list")
    for level in levels:
        if not (isinstance(level, list) and len(level) == 2):
            raise ExchangeDataError(where, "ws.depth_levels", f"{key} level {level!r}")
        _check_decimal({"price": level[0]}, "price", where, "ws.depth_levels")
        _check_decimal({"qty": level[1]}, "qty", where, "ws.depth_levels", positive=False)


def check_binance_frame(
    text: str | bytes, where: str = "websocket frame"
) -> dict[str, Any] | list[Any]:
    """Parse one Binance websocket frame and check the events we consume; return the JSON.

    Checked: ``trade``/``aggTrade`` (ids, times, positive price and quantity, maker flag),
    ``depthUpdate`` (``U <= u``, levels), ``kline``. Other events and control replies pass.
    Parsed with orjson, as ccxt parses frames; the error's location (``where`` and the frame's
    first characters) is only built for a frame that fails.
    """
    try:
        message = orjson.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExchangeDataError(
            _frame_where(text, where), "ws.json", f"not valid JSON ({exc})"
        ) from None
    try:
        return _check_frame(message)
    except ExchangeDataError as exc:
        raise ExchangeDataError(_frame_where(text, where), exc.rule, exc.detail) from None


def _frame_where(text: str | bytes, where: str) -> str:
    preview = (
        text[:_FRAME_PREVIEW]
        if isinstance(text, str)
        else text[:_FRAME_PREVIEW].decode(errors="replace")
    )
    return f"{where} {preview!r}"


def _check_frame(message: Any) -> dict[str, Any] | list[Any]:
    where = ""  # the caller names the frame
    if isinstance(message, list):
        return message
    if not isinstance(message, dict):
        raise ExchangeDataError(where, "ws.object", "frame is neither an object nor a list")
    data = message.get("data", message) if "stream" in message else message
    if not isinstance(data, dict):
        raise ExchangeDataError(where, "ws.object", "combined frame's data is not an object")
    event = data.get("e")
    if event in ("trade", "aggTrade"):
        _check_int(data, "E", where, "ws.trade_time")
        _check_int(data, "T", where, "ws.trade_time")
        _check_int(data, "t" if event == "trade" else "a", where, "ws.trade_id")
        _check_decimal(data, "p", where, "ws.trade_price")
        _check_decimal(data, "q", where, "ws.trade_qty")
        if not isinstance(data.get("m"), bool):
            raise ExchangeDataError(
                where, "ws.trade_maker", f"m={data.get('m')!r} is not a boolean"
            )
        if not isinstance(data.get("s"), str):
            raise ExchangeDataError(where, "ws.symbol", f"s={data.get('s')!r}")
    elif event == "depthUpdate":
        first = _check_int(data, "U", where, "ws.depth_ids")
        last = _check_int(data, "u", where, "ws.depth_ids")
        if first > last:
            raise ExchangeDataError(where, "ws.depth_ids", f"U={first} > u={last}")
        _check_int(data, "E", where, "ws.event_time")
        _check_levels(data, "b", where)
        _check_levels(data, "a", where)
    elif event == "kline":
        k = data.get("k")
        if not isinstance(k, dict):
            raise ExchangeDataError(where, "ws.kline", "k is not an object")
        for key in ("t", "T"):
            _check_int(k, key, where, "ws.kline")
        for key in ("o", "h", "l", "c"):
            _check_decimal(k, key, where, "ws.kline")
        _check_decimal(k, "v", where, "ws.kline", positive=False)
    return message
