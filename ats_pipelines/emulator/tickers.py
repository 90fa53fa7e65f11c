"""Binance spot ticker endpoints: ``ticker/24hr``, ``ticker`` (rolling window),
``ticker/tradingDay``, ``ticker/price``, ``ticker/bookTicker``, ``avgPrice``, and
``/sapi/v1/system/status``.

Statistics come from the source's klines over the window (1m bars up to 1000 minutes, 1h bars
beyond), so REST tickers agree with the klines a client can fetch. ``symbol`` picks one market
(an object answered), ``symbols=["A","B"]`` several (a list), neither every market where Binance
allows that (``24hr``, ``price``, ``bookTicker``) and ``-1102`` where it does not.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ats_pipelines.emulator.model import float_to_str

if TYPE_CHECKING:
    from ats_pipelines.emulator.rest import BinanceRest
    from ats_pipelines.emulator.source import MarketSource

DAY_MS = 86_400_000
ZERO = "0.00000000"
_WINDOW = re.compile(r"^(\d{1,2})([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS}
MINI_FIELDS = (
    "symbol",
    "openPrice",
    "highPrice",
    "lowPrice",
    "lastPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
)


def window_ms(text: str | None) -> int:
    """``windowSize`` as Binance accepts it: 1m..59m, 1h..23h, 1d..7d (default 1d)."""
    from ats_pipelines.emulator.rest import BinanceError

    if text is None:
        return DAY_MS
    match = _WINDOW.match(text)
    limits = {"m": 59, "h": 23, "d": 7}
    if not match or not 1 <= int(match.group(1)) <= limits[match.group(2)]:
        raise BinanceError(400, -1100, f"Invalid windowSize {text!r}.")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def window_stats(symbol_id: str, source: MarketSource, now: int, span_ms: int) -> dict[str, object]:
    """Binance's FULL ticker statistics of one symbol over ``(now - span_ms, now]``."""
    interval, step = ("1m", 60_000) if span_ms <= 1000 * 60_000 else ("1h", 3_600_000)
    start = (now - span_ms) // step * step + step
    rows = source.klines(symbol_id, interval, start, now, 1000, now)
    if not rows:
        return {
            "symbol": symbol_id,
            "priceChange": ZERO,
            "priceChangePercent": "0.000",
            "weightedAvgPrice": ZERO,
            "openPrice": ZERO,
            "highPrice": ZERO,
            "lowPrice": ZERO,
            "lastPrice": ZERO,
            "volume": ZERO,
            "quoteVolume": ZERO,
            "openTime": now - span_ms,
            "closeTime": now,
            "firstId": -1,
            "lastId": -1,
            "count": 0,
        }
    first, last = rows[0], rows[-1]
    volume = math.fsum(float(r.volume) for r in rows)
    quote = math.fsum(float(r.quote_volume) for r in rows)
    opened, closed = float(first.open), float(last.close)
    traded = [r for r in rows if r.first_trade_id >= 0]
    return {
        "symbol": symbol_id,
        "priceChange": float_to_str(closed - opened),
        "priceChangePercent": f"{(closed - opened) / opened * 100:.3f}" if opened else "0.000",
        "weightedAvgPrice": float_to_str(quote / volume) if volume else last.close,
        "openPrice": first.open,
        "highPrice": float_to_str(max(float(r.high) for r in rows)),
        "lowPrice": float_to_str(min(float(r.low) for r in rows)),
        "lastPrice": last.close,
        "volume": float_to_str(volume),
        "quoteVolume": float_to_str(quote),
        "openTime": first.open_time,
        "closeTime": min(last.close_time, now),
        "firstId": traded[0].first_trade_id if traded else -1,
        "lastId": traded[-1].last_trade_id if traded else -1,
        "count": sum(r.trades for r in rows),
    }


def top_of_book(source: MarketSource, symbol_id: str, now: int) -> dict[str, str]:
    book = source.depth(symbol_id, 1, now)
    bid = book.bids[0] if book.bids else (ZERO, ZERO)
    ask = book.asks[0] if book.asks else (ZERO, ZERO)
    return {"bidPrice": bid[0], "bidQty": bid[1], "askPrice": ask[0], "askQty": ask[1]}


class Tickers:
    """The handlers; they share the REST side's sources, clock and parameter checks."""

    def __init__(self, rest: BinanceRest) -> None:
        self.rest = rest

    def routes(self) -> list[web.RouteDef]:
        get = web.get
        return [
            get("/api/v3/ticker/24hr", self.ticker_24hr),
            get("/api/v3/ticker", self.rolling),
            get("/api/v3/ticker/tradingDay", self.trading_day),
            get("/api/v3/ticker/price", self.price),
            get("/api/v3/ticker/bookTicker", self.book_ticker),
            get("/api/v3/avgPrice", self.avg_price),
            get("/sapi/v1/system/status", self.system_status),
        ]

    def chosen(self, request: web.Request, *, all_allowed: bool) -> list[str] | None:
        """Symbols asked for; None means one (``symbol``), so an object is answered."""
        from ats_pipelines.emulator.rest import BinanceError

        sources = self.rest.sources
        if "symbol" in request.query and "symbols" in request.query:
            raise BinanceError(400, -1101, "Combination of optional parameters invalid.")
        if "symbols" in request.query:
            try:
                wanted = json.loads(request.query["symbols"])
            except ValueError:
                wanted = None
            if (
                not isinstance(wanted, list)
                or not wanted
                or not all(isinstance(w, str) for w in wanted)
            ):
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'symbols'.")
            if any(w not in sources for w in wanted):
                raise BinanceError(400, -1121, "Invalid symbol.")
            return list(dict.fromkeys(wanted))
        if "symbol" in request.query or not all_allowed:
            self.rest.source_of(request)  # -1102 / -1121 as Binance answers them
            return None
        return list(sources)

    def _answer(
        self, request: web.Request, all_allowed: bool, one: Callable[[str], dict[str, object]]
    ) -> web.Response:
        symbols = self.chosen(request, all_allowed=all_allowed)
        if symbols is None:
            return web.json_response(one(request.query["symbol"]))
        return web.json_response([one(s) for s in symbols])

    def _typed(self, request: web.Request, stats: dict[str, object]) -> dict[str, object]:
        from ats_pipelines.emulator.rest import BinanceError

        kind = request.query.get("type", "FULL")
        if kind not in ("FULL", "MINI"):
            raise BinanceError(400, -1100, f"Invalid type {kind!r}; FULL or MINI.")
        return {k: stats[k] for k in MINI_FIELDS} if kind == "MINI" else stats

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        now = self.rest.clock.market_ms()

        def one(symbol_id: str) -> dict[str, object]:
            source = self.rest.sources[symbol_id]
            stats = window_stats(symbol_id, source, now, DAY_MS)
            if request.query.get("type") == "MINI":
                return self._typed(request, stats)
            full = {
                "symbol": symbol_id,
                "priceChange": stats["priceChange"],
                "priceChangePercent": stats["priceChangePercent"],
                "weightedAvgPrice": stats["weightedAvgPrice"],
                "prevClosePrice": stats["openPrice"],
                "lastPrice": stats["lastPrice"],
                "lastQty": _last_qty(source, symbol_id, now),
                **top_of_book(source, symbol_id, now),
            }
            full.update({k: stats[k] for k in MINI_FIELDS[1:] if k != "lastPrice"})
            return full

        return self._answer(request, True, one)

    async def rolling(self, request: web.Request) -> web.Response:
        span = window_ms(request.query.get("windowSize"))
        now = self.rest.clock.market_ms()
        return self._answer(
            request,
            False,
            lambda s: self._typed(request, window_stats(s, self.rest.sources[s], now, span)),
        )

    async def trading_day(self, request: web.Request) -> web.Response:
        """Statistics since 00:00 UTC of the current day (``timeZone`` 0, the default)."""
        now = self.rest.clock.market_ms()
        span = now - now // DAY_MS * DAY_MS + 1
        return self._answer(
            request,
            False,
            lambda s: self._typed(request, window_stats(s, self.rest.sources[s], now, span)),
        )

    async def price(self, request: web.Request) -> web.Response:
        now = self.rest.clock.market_ms()

        def one(symbol_id: str) -> dict[str, object]:
            rows = self.rest.sources[symbol_id].klines(symbol_id, "1m", None, None, 1, now)
            return {"symbol": symbol_id, "price": rows[-1].close if rows else ZERO}

        return self._answer(request, True, one)

    async def book_ticker(self, request: web.Request) -> web.Response:
        now = self.rest.clock.market_ms()
        return self._answer(
            request,
            True,
            lambda s: {"symbol": s, **top_of_book(self.rest.sources[s], s, now)},
        )

    async def avg_price(self, request: web.Request) -> web.Response:
        """Volume-weighted price of the last five minutes, as Binance computes it."""
        symbol_id, source = self.rest.source_of(request)
        now = self.rest.clock.market_ms()
        rows = source.klines(symbol_id, "1m", now - 5 * 60_000, now, 6, now)[-5:]
        volume = math.fsum(float(r.volume) for r in rows)
        quote = math.fsum(float(r.quote_volume) for r in rows)
        price = float_to_str(quote / volume) if volume else (rows[-1].close if rows else ZERO)
        return web.json_response({"mins": 5, "price": price, "closeTime": now})

    async def system_status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": 0, "msg": "normal"})


def _last_qty(source: MarketSource, symbol_id: str, now: int) -> str:
    batch = source.trades(symbol_id, now, 1)
    return batch.qtys[-1] if len(batch) else ZERO
