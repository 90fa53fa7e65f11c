"""Birdeye public API client: DEX trades and pool liquidity as the platform's rows.

Requests carry ``X-API-KEY`` and ``x-chain`` headers; answers are ``{"success": true,
"data": ...}``. Every request first passes the daily quota (free tier), repeated requests within
the cache TTL are answered from the cache (and cost nothing), and requests are spaced by
``min_interval_s`` (the free tier allows about one per second). Swaps become ``TradeRow``s with
the DEX (the swap's ``source``, e.g. ``raydium``) as the exchange.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from ats_pipelines.dex.quota import DailyQuota, QuotaExhausted, TTLCache
from ats_pipelines.exchange.errors import ExchangeDataError
from ats_pipelines.exchange.rows import LiquidityRow, TradeRow

log = logging.getLogger(__name__)
BIRDEYE_URL = "https://public-api.birdeye.so"
SOURCE = "birdeye"


class BirdeyeError(RuntimeError):
    """Birdeye refused a request (the message has its status and message)."""


BirdeyeQuotaExhausted = QuotaExhausted


def _dex_name(source: Any) -> str:
    return str(source).strip().lower().replace(" ", "_")


def _leg(item: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    leg = item.get(key)
    if not isinstance(leg, dict) or not isinstance(leg.get("symbol"), str):
        raise ExchangeDataError(where, "dex.swap_shape", f"{key} is not a token leg")
    return leg


def _amount(leg: dict[str, Any], where: str) -> float:
    value = leg.get("uiChangeAmount", leg.get("uiAmount"))
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
        raise ExchangeDataError(
            where,
            "dex.swap_amount",
            f"{leg.get('symbol')} amount {value!r} is not a non-zero number",
        )
    return float(value)


def swap_to_trade(item: dict[str, Any], index: int = 0) -> TradeRow:
    """One Birdeye swap -> a trade of base/quote on the DEX; side is the trader's on base."""
    where = f"birdeye swap #{index} txHash={item.get('txHash')!r}"
    tx = item.get("txHash")
    if not isinstance(tx, str) or not tx:
        raise ExchangeDataError(where, "dex.swap_id", "swap has no txHash")
    when = item.get("blockUnixTime")
    if isinstance(when, bool) or not isinstance(when, int) or when <= 0:
        raise ExchangeDataError(where, "dex.swap_time", f"blockUnixTime={when!r}")
    base, quote = _leg(item, "base", where), _leg(item, "quote", where)
    base_change, quote_change = _amount(base, where), _amount(quote, where)
    if (base_change > 0) == (quote_change > 0):
        raise ExchangeDataError(where, "dex.swap_direction", "base and quote moved the same way")
    amount, cost = abs(base_change), abs(quote_change)
    source = item.get("source")
    if not source:
        raise ExchangeDataError(where, "dex.swap_source", "swap names no DEX")
    return TradeRow(
        _dex_name(source),
        f"{base['symbol']}/{quote['symbol']}",
        when * 1000,
        tx,
        cost / amount,
        amount,
        cost,
        "buy" if base_change > 0 else "sell",
        SOURCE,
    )


class BirdeyeClient:
    """Quota-aware, caching client of Birdeye's public API (one chain)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = BIRDEYE_URL,
        chain: str = "solana",
        daily_quota: int = 1000,
        quota_state: Path | None = None,
        cache_ttl_s: float = 60.0,
        min_interval_s: float = 1.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise BirdeyeError("Birdeye needs an API key (X-API-KEY); none was configured")
        self.base_url = base_url.rstrip("/")
        self.chain = chain
        self.quota = DailyQuota(daily_quota, quota_state, clock)
        self.cache = TTLCache(cache_ttl_s, clock=clock)
        self.min_interval_s = min_interval_s
        self._headers = {"X-API-KEY": api_key, "x-chain": chain, "accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._last_request = 0.0
        self._lock = asyncio.Lock()
        self.requests_sent = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> BirdeyeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, path: str, params: dict[str, Any]) -> Any:
        """``data`` of one GET; cached, quota-checked, spaced."""
        key = (path, tuple(sorted((k, str(v)) for k, v in params.items())))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        async with self._lock:
            self.quota.acquire()
            wait = self._last_request + self.min_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_request = time.monotonic()
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=self._timeout)
            self.requests_sent += 1
            async with self._session.get(
                self.base_url + path, params=params, headers=self._headers
            ) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
        message = body.get("message") if isinstance(body, dict) else None
        if status == 429:
            self.quota.exhaust()
            raise QuotaExhausted(
                f"birdeye {path}: 429 from the API ({message}); treating the daily quota as used up"
            )
        if status != 200 or not isinstance(body, dict) or body.get("success") is not True:
            detail = message if message else repr(body)
            raise BirdeyeError(f"birdeye {path} {params}: HTTP {status}: {detail}")
        data = body.get("data")
        self.cache.put(key, data)
        log.info(
            "event=birdeye_request path=%s status=%s quota_used=%s quota_limit=%s",
            path,
            status,
            self.quota.used,
            self.quota.limit,
        )
        return data

    async def _trades(
        self, path: str, address: str, limit: int, offset: int, sort: str
    ) -> tuple[list[TradeRow], bool]:
        data = await self.get(
            path,
            {
                "address": address,
                "offset": offset,
                "limit": limit,
                "tx_type": "swap",
                "sort_type": sort,
            },
        )
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ExchangeDataError(
                f"birdeye {path} address={address}", "dex.items", "data.items is not a list"
            )
        rows = [swap_to_trade(item, offset + i) for i, item in enumerate(items)]
        return rows, bool(data.get("hasNext"))

    async def token_trades(
        self, address: str, limit: int = 50, offset: int = 0, sort: str = "desc"
    ) -> tuple[list[TradeRow], bool]:
        """Swaps of any pool holding token ``address``; returns (rows, has_next)."""
        return await self._trades("/defi/txs/token", address, limit, offset, sort)

    async def pair_trades(
        self, pool: str, limit: int = 50, offset: int = 0, sort: str = "desc"
    ) -> tuple[list[TradeRow], bool]:
        """Swaps of one pool; returns (rows, has_next)."""
        return await self._trades("/defi/txs/pair", pool, limit, offset, sort)

    async def token_price(self, address: str) -> dict[str, Any]:
        """``value`` (USD), ``liquidity`` (USD), ``updateUnixTime`` of a token."""
        data = await self.get("/defi/price", {"address": address, "include_liquidity": "true"})
        if not isinstance(data, dict) or not isinstance(data.get("value"), int | float):
            raise ExchangeDataError(
                f"birdeye /defi/price address={address}", "dex.price", "data.value is not a number"
            )
        return data

    async def pool_liquidity(self, pool: str) -> LiquidityRow:
        """A pool's liquidity (USD), price and 24h quote volume."""
        data = await self.get("/defi/v3/pair/overview/single", {"address": pool})
        where = f"birdeye pair overview {pool}"
        if not isinstance(data, dict):
            raise ExchangeDataError(where, "dex.pool_shape", "data is not an object")
        liquidity, price = data.get("liquidity"), data.get("price")
        if not isinstance(liquidity, int | float) or liquidity < 0:
            raise ExchangeDataError(where, "dex.pool_liquidity", f"liquidity={liquidity!r}")
        if not isinstance(price, int | float) or price <= 0:
            raise ExchangeDataError(where, "dex.pool_price", f"price={price!r}")
        base, quote = data.get("base") or {}, data.get("quote") or {}
        volume = data.get("volume_24h_quote")
        return LiquidityRow(
            _dex_name(data.get("source", "unknown")),
            f"{base.get('symbol')}/{quote.get('symbol')}",
            pool,
            int(self.quota.clock() * 1000),
            float(liquidity),
            float(price),
            float(volume) if isinstance(volume, int | float) else None,
            SOURCE,
        )
