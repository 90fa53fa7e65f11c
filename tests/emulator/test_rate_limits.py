"""Request weights as Binance applies them: per-endpoint weights, the used-weight headers,
429 with Retry-After over the budget, 418 for a client that keeps going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ccxt
import pytest

from ats_pipelines.emulator.ratelimit import RateLimitConfig, WeightLimiter
from ats_pipelines.emulator.server import Emulator

MakeEmulator = Callable[..., Awaitable[Emulator]]
LONG = 1e9  # windows are wall-clock aligned: one this long never rolls over inside a test


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize(
    ("path", "weight"),
    [
        ("/api/v3/ping", 1),
        ("/api/v3/time", 1),
        ("/api/v3/exchangeInfo", 20),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000", 2),
        ("/api/v3/depth?symbol=BTCUSDT", 5),
        ("/api/v3/depth?symbol=BTCUSDT&limit=500", 25),
        ("/api/v3/depth?symbol=BTCUSDT&limit=1000", 50),
        ("/api/v3/depth?symbol=BTCUSDT&limit=5000", 250),
        ("/api/v3/trades?symbol=BTCUSDT", 25),
        ("/api/v3/aggTrades?symbol=BTCUSDT", 4),
        ("/api/v3/avgPrice?symbol=BTCUSDT", 2),
        ("/api/v3/ticker/24hr?symbol=BTCUSDT", 2),
        ('/api/v3/ticker/24hr?symbols=["BTCUSDT","ETHUSDT"]', 2),
        ("/api/v3/ticker/24hr", 80),
        ('/api/v3/ticker?symbols=["BTCUSDT","ETHUSDT"]', 8),
        ("/api/v3/ticker/tradingDay?symbol=BTCUSDT", 4),
        ("/api/v3/ticker/price?symbol=BTCUSDT", 2),
        ("/api/v3/ticker/price", 4),
        ("/api/v3/ticker/bookTicker", 4),
    ],
)
async def test_each_endpoint_charges_binance_weight_and_says_so(
    make_emulator: MakeEmulator, path: str, weight: int
) -> None:
    emulator = await make_emulator(rate_limit=RateLimitConfig(window_s=LONG))
    async with aiohttp.ClientSession() as session:
        _, first, _ = await _get(session, emulator.rest_url + "/api/v3/ping")
        status, headers, body = await _get(session, emulator.rest_url + path)
    assert status == 200, body
    assert int(first["x-mbx-used-weight-1m"]) == 1
    assert int(headers["x-mbx-used-weight"]) == 1 + weight
    assert int(headers["x-mbx-used-weight-1m"]) == 1 + weight


async def test_over_budget_429_with_retry_after_then_418_for_a_client_that_keeps_going(
    make_emulator: MakeEmulator,
) -> None:
    emulator = await make_emulator(
        rate_limit=RateLimitConfig(weight_per_window=10, window_s=LONG, ban_after=2, ban_s=600)
    )
    url = emulator.rest_url + "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5"
    async with aiohttp.ClientSession() as session:
        answers = [await _get(session, url) for _ in range(5)]
        assert [a[0] for a in answers] == [200] * 5
        headers = answers[-1][1]
        assert headers["x-mbx-used-weight-1m"] == "10"
        status, headers, body = await _get(session, url)
        assert status == 429
        assert body["code"] == -1003 and "request weight" in body["msg"]
        assert 1 <= int(headers["Retry-After"]) <= LONG
        assert (await _get(session, url))[0] == 429  # a first violation: still only 429
        status, headers, body = await _get(session, url)
        assert status == 418
        assert "banned until" in body["msg"]
        assert int(headers["Retry-After"]) == 600
        assert (await _get(session, emulator.rest_url + "/api/v3/ping"))[0] == 418
    assert emulator.rest.limiter.refused == {429: 2, 418: 2}


async def test_ccxt_sees_429_and_418_as_ddos_protection_a_transient_error(
    make_emulator: MakeEmulator, make_ccxt: Callable[..., Any]
) -> None:
    emulator = await make_emulator(
        rate_limit=RateLimitConfig(weight_per_window=25, window_s=LONG, ban_after=1)
    )
    exchange = make_ccxt(emulator)
    exchange.enableRateLimit = False
    await exchange.load_markets()  # weight 20
    await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)  # 22
    await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)  # 24
    assert exchange.last_response_headers["x-mbx-used-weight-1m"] == "24"
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert exchange.last_response_headers["Retry-After"]
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert issubclass(ccxt.DDoSProtection, ccxt.NetworkError)  # retried, Retry-After honoured


def test_windows_reset_the_used_weight_and_a_ban_ends() -> None:
    now = [0.0]
    limiter = WeightLimiter(
        RateLimitConfig(weight_per_window=4, window_s=60, ban_after=1, ban_s=120),
        clock=lambda: now[0],
    )
    assert [limiter.admit(2)[0] for _ in range(3)] == [200, 200, 429]
    assert limiter.admit(2) == (418, 120.0)
    now[0] = 119.0
    assert limiter.admit(1)[0] == 418
    now[0] = 121.0  # ban over, a new window: the budget is whole again
    assert limiter.admit(4) == (200, None)
    assert limiter.used == 4


def test_zero_budget_turns_weights_off() -> None:
    limiter = WeightLimiter(RateLimitConfig(weight_per_window=0))
    assert not limiter.enabled
