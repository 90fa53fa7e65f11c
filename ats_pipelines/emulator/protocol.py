"""Binance spot wire formats: REST bodies and websocket events, built as JSON text.

Hot paths (trade and depth events) are formatted directly into strings: the stream publisher
sends tens of thousands of them a second and a dict-then-dumps round trip would dominate.
Field names and order follow Binance's API documentation and its recorded traffic in
``../shared/testdata`` (cryptofeed capture, nautilus and ccxt REST samples).
"""

from __future__ import annotations

import json

from ats_pipelines.emulator.model import DepthDiff, DepthSnapshot, KlineRow, SymbolSpec, TradeBatch

_TRUE_FALSE = ("false", "true")


def error_body(code: int, msg: str) -> dict[str, object]:
    return {"code": code, "msg": msg}


def kline_rest(row: KlineRow) -> list[object]:
    return [
        row.open_time,
        row.open,
        row.high,
        row.low,
        row.close,
        row.volume,
        row.close_time,
        row.quote_volume,
        row.trades,
        row.taker_buy_base,
        row.taker_buy_quote,
        "0",
    ]


def klines_body(rows: list[KlineRow]) -> bytes:
    """A klines answer as JSON text, formatted directly: a list-then-dumps round trip was
    most of the emulator's time per 1000-row page. Values are decimal strings and integers,
    so nothing needs escaping."""
    return (
        "["
        + ",".join(
            f'[{r.open_time},"{r.open}","{r.high}","{r.low}","{r.close}","{r.volume}",'
            f'{r.close_time},"{r.quote_volume}",{r.trades},"{r.taker_buy_base}",'
            f'"{r.taker_buy_quote}","0"]'
            for r in rows
        )
        + "]"
    ).encode()


def depth_rest(snapshot: DepthSnapshot) -> dict[str, object]:
    return {
        "lastUpdateId": snapshot.last_update_id,
        "bids": [list(level) for level in snapshot.bids],
        "asks": [list(level) for level in snapshot.asks],
    }


def trades_rest(batch: TradeBatch) -> list[dict[str, object]]:
    return [
        {
            "id": r.trade_id,
            "price": r.price,
            "qty": r.qty,
            "quoteQty": r.quote_qty,
            "time": r.ts,
            "isBuyerMaker": r.buyer_maker,
            "isBestMatch": True,
        }
        for r in batch.rows()
    ]


def agg_trades_rest(batch: TradeBatch) -> list[dict[str, object]]:
    """Each trade as its own aggregate (a = f = l), which Binance's rules allow."""
    return [
        {
            "a": r.trade_id,
            "p": r.price,
            "q": r.qty,
            "f": r.trade_id,
            "l": r.trade_id,
            "T": r.ts,
            "m": r.buyer_maker,
            "M": True,
        }
        for r in batch.rows()
    ]


def symbol_info(spec: SymbolSpec) -> dict[str, object]:
    tick = f"{10.0**-spec.price_decimals:.8f}"
    step = f"{10.0**-spec.qty_decimals:.8f}"
    return {
        "symbol": spec.symbol_id,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step,
                "maxQty": "9000000.00000000",
                "stepSize": step,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "0.00010000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def exchange_info(specs: list[SymbolSpec], server_time: int) -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ],
        "exchangeFilters": [],
        "symbols": [symbol_info(s) for s in specs],
    }


def trade_events(batch: TradeBatch, event_time: int | None = None) -> list[str]:
    """``<symbol>@trade`` events; ``E`` is the trade time unless an event time is given."""
    s = batch.symbol_id
    out = []
    for tid, ts, p, q, m in zip(
        batch.ids, batch.ts, batch.prices, batch.qtys, batch.buyer_maker, strict=True
    ):
        e = ts if event_time is None else event_time
        out.append(
            f'{{"e":"trade","E":{e},"s":"{s}","t":{tid},"p":"{p}","q":"{q}",'
            f'"T":{ts},"m":{_TRUE_FALSE[m]},"M":true}}'
        )
    return out


def agg_trade_events(batch: TradeBatch, event_time: int | None = None) -> list[str]:
    s = batch.symbol_id
    out = []
    for tid, ts, p, q, m in zip(
        batch.ids, batch.ts, batch.prices, batch.qtys, batch.buyer_maker, strict=True
    ):
        e = ts if event_time is None else event_time
        out.append(
            f'{{"e":"aggTrade","E":{e},"s":"{s}","a":{tid},"p":"{p}","q":"{q}",'
            f'"f":{tid},"l":{tid},"T":{ts},"m":{_TRUE_FALSE[m]},"M":true}}'
        )
    return out


def depth_event(diff: DepthDiff) -> str:
    bids = json.dumps([list(level) for level in diff.bids], separators=(",", ":"))
    asks = json.dumps([list(level) for level in diff.asks], separators=(",", ":"))
    return (
        f'{{"e":"depthUpdate","E":{diff.event_time},"s":"{diff.symbol_id}",'
        f'"U":{diff.first_id},"u":{diff.last_id},"b":{bids},"a":{asks}}}'
    )


def merge_diffs(diffs: list[DepthDiff]) -> DepthDiff:
    """Several consecutive diffs as one (what the 1000 ms depth stream sends)."""
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    for d in diffs:
        bids.update(d.bids)
        asks.update(d.asks)
    last = diffs[-1]
    return DepthDiff(
        last.symbol_id,
        last.event_time,
        diffs[0].first_id,
        last.last_id,
        list(bids.items()),
        list(asks.items()),
    )


def kline_event(symbol_id: str, interval: str, event_time: int, row: KlineRow, closed: bool) -> str:
    k = {
        "t": row.open_time,
        "T": row.close_time,
        "s": symbol_id,
        "i": interval,
        "f": row.first_trade_id,
        "L": row.last_trade_id,
        "o": row.open,
        "c": row.close,
        "h": row.high,
        "l": row.low,
        "v": row.volume,
        "n": row.trades,
        "x": closed,
        "q": row.quote_volume,
        "V": row.taker_buy_base,
        "Q": row.taker_buy_quote,
        "B": "0",
    }
    return json.dumps(
        {"e": "kline", "E": event_time, "s": symbol_id, "k": k}, separators=(",", ":")
    )


def combined(stream: str, payload: str) -> str:
    """The ``/stream`` endpoint's wrapper around a raw event."""
    return f'{{"stream":"{stream}","data":{payload}}}'
