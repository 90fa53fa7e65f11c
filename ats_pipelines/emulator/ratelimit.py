"""Binance's request-weight limit, as the spot API applies it to an IP.

Every ``/api/`` request costs a weight (per endpoint, some by parameter: depth by ``limit``,
tickers by how many symbols). Weights add up in fixed one-minute windows; every answer carries
the window's total in ``X-MBX-USED-WEIGHT`` and ``X-MBX-USED-WEIGHT-1M``. A request that would
go over the budget is refused with HTTP 429 (``-1003``) and a ``Retry-After`` (seconds to the
next window); a client that keeps sending after a 429 before that time is banned: HTTP 418 with
``Retry-After`` until the ban ends (Binance scales bans from 2 minutes to 3 days).

Windows run on the wall clock, aligned to its minutes as Binance's are (a client's budget is
wall time even when the emulated market runs faster). ``window_s`` and the budget are
configurable so tests need not wait a minute.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

DEFAULT_WEIGHT_PER_MINUTE = 6000  # what exchangeInfo advertises for REQUEST_WEIGHT


@dataclass(frozen=True)
class RateLimitConfig:
    """The emulated limit. ``weight_per_window=0`` turns weights off (no headers, no 429)."""

    weight_per_window: int = DEFAULT_WEIGHT_PER_MINUTE
    window_s: float = 60.0
    ban_after: int = 3  # requests sent after a 429, inside its Retry-After, before a ban
    ban_s: float = 120.0  # Binance's shortest ban


def _symbol_count(request: web.Request) -> int | None:
    """How many symbols ``symbols=[...]`` names (None without it; 1 with ``symbol``)."""
    if "symbol" in request.query:
        return 1
    text = request.query.get("symbols")
    if text is None:
        return None
    try:
        wanted = json.loads(text)
    except ValueError:
        return 1
    return len(wanted) if isinstance(wanted, list) else 1


def _depth_weight(request: web.Request) -> int:
    text = request.query.get("limit", "100")
    limit = int(text) if text.isdigit() else 100
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _ticker_24hr_weight(request: web.Request) -> int:
    count = _symbol_count(request)
    if count is None:
        return 80
    if count <= 20:
        return 2
    return 40 if count <= 100 else 80


def _per_symbol(weight: int, cap: int) -> Callable[[web.Request], int]:
    def cost(request: web.Request) -> int:
        return min(weight * (_symbol_count(request) or 1), cap)

    return cost


def _single_or_all(single: int, many: int) -> Callable[[web.Request], int]:
    return lambda request: single if "symbol" in request.query else many


# Binance spot's published weights (developers.binance.com, spot REST market data endpoints).
WEIGHTS: dict[str, int | Callable[[web.Request], int]] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/depth": _depth_weight,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/avgPrice": 2,
    "/api/v3/ticker/24hr": _ticker_24hr_weight,
    "/api/v3/ticker/tradingDay": _per_symbol(4, 200),
    "/api/v3/ticker": _per_symbol(4, 200),
    "/api/v3/ticker/price": _single_or_all(2, 4),
    "/api/v3/ticker/bookTicker": _single_or_all(2, 4),
}


def request_weight(request: web.Request) -> int:
    """The weight Binance charges for this request (1 for spot paths it does not list)."""
    weight = WEIGHTS.get(request.path.replace("/api/v1/", "/api/v3/"), 1)
    return weight if isinstance(weight, int) else weight(request)


class WeightLimiter:
    """Used weight per window, and the 429/418 decisions, for one emulator (one client IP:
    everything on loopback is one address)."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._window = -1
        self.used = 0
        self._retry_until = 0.0  # end of the window a 429 was given in
        self._violations = 0
        self.banned_until = 0.0
        self.refused = {429: 0, 418: 0}

    @property
    def enabled(self) -> bool:
        return self.config.weight_per_window > 0

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.config.window_s)
        if window != self._window:
            self._window, self.used = window, 0

    def admit(self, weight: int) -> tuple[int, float | None]:
        """Charge ``weight``: (status, Retry-After seconds); status 200 means go ahead."""
        now = self._clock()
        if now < self.banned_until:
            self.refused[418] += 1
            return 418, self.banned_until - now
        self._roll(now)
        window_end = (self._window + 1) * self.config.window_s
        if now < self._retry_until:
            self._violations += 1
            if self._violations >= self.config.ban_after:
                self.banned_until = now + self.config.ban_s
                self._violations = 0
                self.refused[418] += 1
                return 418, self.config.ban_s
        if self.used + weight > self.config.weight_per_window:
            self._retry_until = window_end
            self.refused[429] += 1
            return 429, window_end - now
        self.used += weight
        return 200, None

    def headers(self) -> dict[str, str]:
        used = str(self.used)
        return {"x-mbx-used-weight": used, "x-mbx-used-weight-1m": used}

    def refusal(self, status: int, retry_after_s: float) -> web.Response:
        limit = self.config.weight_per_window
        if status == 429:
            msg = (
                f"Too much request weight used; current limit is {limit} request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the "
                "API."
            )
        else:
            until = int((time.time() + retry_after_s) * 1000)
            msg = (
                f"Way too much request weight used; IP banned until {until}. Please use "
                "WebSocket Streams for live updates to avoid bans."
            )
        return web.json_response(
            {"code": -1003, "msg": msg},
            status=status,
            headers={"Retry-After": str(max(1, math.ceil(retry_after_s))), **self.headers()},
        )
