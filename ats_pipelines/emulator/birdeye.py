"""An emulated Birdeye public API (DEX trades, token prices, pool overviews) on the emulator.

Endpoints and response shapes follow Birdeye's public API documentation: ``GET /defi/txs/token``,
``/defi/txs/pair``, ``/defi/price`` and ``/defi/v3/pair/overview/single``, answering
``{"success": true, "data": {...}}``. Requests need an ``X-API-KEY`` header and count against a
per-key daily quota (UTC days of the emulator clock); past it the API answers 429.

The DEX market is synthetic and deterministic: a few Solana pools whose swaps are drawn per
(pool, minute) from a seed, so a test can ask for the same swaps twice and compare.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from aiohttp import web

from ats_pipelines.emulator.clock import EmulatorClock
from ats_pipelines.emulator.intervals import DAY_MS, MINUTE_MS

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
HISTORY_MS = DAY_MS  # how far back the emulated DEX keeps swaps
MAX_OFFSET_PLUS_LIMIT = 10_000


def _b58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    return "".join(reversed(out)) or "1"


@dataclass(frozen=True)
class Token:
    symbol: str
    address: str
    decimals: int
    usd_price: float


@dataclass(frozen=True)
class Pool:
    address: str
    source: str  # the DEX
    base: Token
    quote: Token
    liquidity_usd: float
    swaps_per_minute: float


SOL = Token("SOL", "So11111111111111111111111111111111111111112", 9, 150.0)
USDC = Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, 1.0)
BONK = Token("Bonk", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, 0.00002)
JUP = Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, 0.8)
TOKENS = (SOL, USDC, BONK, JUP)


def _pool_address(name: str) -> str:
    return _b58(hashlib.sha256(f"emulated-pool:{name}".encode()).digest())


POOLS = (
    Pool(_pool_address("raydium:SOL/USDC"), "raydium", SOL, USDC, 12_000_000.0, 8.0),
    Pool(_pool_address("orca:SOL/USDC"), "orca", SOL, USDC, 6_000_000.0, 5.0),
    Pool(_pool_address("orca:Bonk/SOL"), "orca", BONK, SOL, 2_500_000.0, 4.0),
    Pool(_pool_address("meteora_dlmm:JUP/USDC"), "meteora_dlmm", JUP, USDC, 1_500_000.0, 3.0),
)


@dataclass(frozen=True)
class BirdeyeConfig:
    seed: int = 11
    daily_quota: int = 1_000  # requests per API key per UTC day
    api_keys: tuple[str, ...] = ()  # empty: any non-empty key is accepted


def _unix(swap: dict[str, object]) -> int:
    value = swap["blockUnixTime"]
    assert isinstance(value, int)
    return value


def _leg_change(swap: dict[str, object], leg: str) -> float:
    side = swap[leg]
    assert isinstance(side, dict)
    return float(side["uiChangeAmount"])


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)


class BirdeyeEmulator:
    """Route handlers and the deterministic DEX behind them."""

    def __init__(self, config: BirdeyeConfig, clock: EmulatorClock) -> None:
        self.config = config
        self.clock = clock
        self.requests: Counter[tuple[str, str]] = Counter()  # (api key, UTC day) -> count
        self.pools = {p.address: p for p in POOLS}
        self.tokens = {t.address: t for t in TOKENS}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/defi/txs/token", self.txs_token),
            web.get("/defi/txs/pair", self.txs_pair),
            web.get("/defi/price", self.price),
            web.get("/defi/v3/pair/overview/single", self.pair_overview),
        ]

    # -- the DEX --------------------------------------------------------------------------------

    def pool_price(self, pool: Pool, t_ms: int) -> float:
        """Quote per base at ``t_ms``: the tokens' USD ratio with a slow wave and noise."""
        minute = t_ms // MINUTE_MS
        key = zlib.crc32(pool.address.encode())
        noise = np.random.default_rng([self.config.seed, key, minute, 0]).normal(0.0, 0.002)
        wave = 0.03 * math.sin(2 * math.pi * minute / 1440.0 + key % 7)
        return pool.base.usd_price / pool.quote.usd_price * math.exp(wave + noise)

    def swaps(self, pool: Pool, minute: int) -> list[dict[str, object]]:
        """The pool's swaps in one minute, oldest first."""
        key = zlib.crc32(pool.address.encode())
        rng = np.random.default_rng([self.config.seed, key, minute, 1])
        n = int(rng.poisson(pool.swaps_per_minute))
        seconds = np.sort(rng.integers(0, 60, n))
        sides = rng.random(n) < 0.5
        usd = np.exp(rng.normal(6.0, 1.5, n))
        out = []
        for i in range(n):
            t_ms = minute * MINUTE_MS + int(seconds[i]) * 1000
            price = self.pool_price(pool, t_ms)
            base_ui = float(usd[i]) / pool.base.usd_price
            base_raw = max(int(base_ui * 10**pool.base.decimals), 1)
            base_ui = base_raw / 10**pool.base.decimals
            quote_raw = max(int(base_ui * price * 10**pool.quote.decimals), 1)
            tx = _b58(
                hashlib.sha512(f"{self.config.seed}:{pool.address}:{minute}:{i}".encode()).digest()
            )
            owner = _b58(hashlib.sha256(f"owner:{key}:{minute}:{i}".encode()).digest())
            out.append(
                self._swap_item(pool, t_ms, bool(sides[i]), base_raw, quote_raw, price, tx, owner)
            )
        return out

    def _swap_item(
        self,
        pool: Pool,
        t_ms: int,
        buy: bool,
        base_raw: int,
        quote_raw: int,
        price: float,
        tx: str,
        owner: str,
    ) -> dict[str, object]:
        """One swap as Birdeye reports it; ``buy``: the owner received the base token."""

        def leg(token: Token, raw: int, change: int) -> dict[str, object]:
            usd = token.usd_price if token is pool.quote else price * pool.quote.usd_price
            return {
                "symbol": token.symbol,
                "decimals": token.decimals,
                "address": token.address,
                "amount": raw,
                "uiAmount": raw / 10**token.decimals,
                "price": usd,
                "nearestPrice": usd,
                "changeAmount": change,
                "uiChangeAmount": change / 10**token.decimals,
                "isScaledUiToken": False,
                "multiplier": None,
            }

        base = leg(pool.base, base_raw, base_raw if buy else -base_raw)
        quote = leg(pool.quote, quote_raw, -quote_raw if buy else quote_raw)
        return {
            "quote": quote,
            "base": base,
            "basePrice": base["price"],
            "quotePrice": quote["price"],
            "txHash": tx,
            "source": pool.source,
            "blockUnixTime": t_ms // 1000,
            "txType": "swap",
            "owner": owner,
            "side": "buy" if buy else "sell",
            "alias": None,
            "pricePair": quote_raw / 10**pool.quote.decimals / (base_raw / 10**pool.base.decimals),
            "from": quote if buy else base,
            "to": base if buy else quote,
            "tokenPrice": base["price"],
            "poolId": pool.address,
        }

    def _history(
        self, pools: list[Pool], offset: int, limit: int, ascending: bool, now: int
    ) -> tuple[list[dict[str, object]], bool]:
        """Swaps of ``pools`` in the kept history, newest (or oldest) first, one page."""
        first_minute = (now - HISTORY_MS) // MINUTE_MS
        last_minute = now // MINUTE_MS
        minutes = range(first_minute, last_minute + 1)
        wanted = offset + limit + 1
        found: list[dict[str, object]] = []
        for minute in minutes if ascending else reversed(minutes):
            batch = [s for p in pools for s in self.swaps(p, minute) if _unix(s) * 1000 <= now]
            batch.sort(key=lambda s: (s["blockUnixTime"], s["txHash"]), reverse=not ascending)
            found.extend(batch)
            if len(found) >= wanted:
                break
        return found[offset : offset + limit], len(found) > offset + limit

    # -- HTTP -----------------------------------------------------------------------------------

    def _admit(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("X-API-KEY", "")
        if not key or (self.config.api_keys and key not in self.config.api_keys):
            return _fail(401, "Unauthorized")
        chain = request.headers.get("x-chain", "solana")
        if chain != "solana":
            return _fail(400, f"Chain {chain} is not supported by the emulator")
        day = datetime.fromtimestamp(self.clock.market_ms() / 1000, tz=UTC).date().isoformat()
        if self.requests[(key, day)] >= self.config.daily_quota:
            return _fail(429, "Too many requests: daily quota exhausted")
        self.requests[(key, day)] += 1
        return None

    def _page(self, request: web.Request, max_limit: int) -> tuple[int, int, bool] | web.Response:
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", str(max_limit)))
        except ValueError:
            return _fail(400, "offset and limit must be integers")
        sort = request.query.get("sort_type", "desc")
        if not 1 <= limit <= max_limit or offset < 0 or offset + limit > MAX_OFFSET_PLUS_LIMIT:
            return _fail(
                400, f"limit must be 1..{max_limit} and offset + limit <= {MAX_OFFSET_PLUS_LIMIT}"
            )
        if sort not in ("asc", "desc"):
            return _fail(400, "sort_type must be asc or desc")
        if request.query.get("tx_type", "swap") not in ("swap", "all"):
            return _fail(400, "the emulator only has swaps (tx_type swap or all)")
        return offset, limit, sort == "asc"

    async def txs_token(self, request: web.Request) -> web.Response:
        denied = self._admit(request)
        if denied is not None:
            return denied
        address = request.query.get("address", "")
        if address not in self.tokens:
            return _fail(400, f"address {address!r} is not a known token")
        page = self._page(request, 50)
        if isinstance(page, web.Response):
            return page
        pools = [p for p in POOLS if address in (p.base.address, p.quote.address)]
        items, more = self._history(pools, *page, now=self.clock.market_ms())
        return web.json_response({"success": True, "data": {"items": items, "hasNext": more}})

    async def txs_pair(self, request: web.Request) -> web.Response:
        denied = self._admit(request)
        if denied is not None:
            return denied
        pool = self.pools.get(request.query.get("address", ""))
        if pool is None:
            return _fail(400, "address is not a known pair")
        page = self._page(request, 50)
        if isinstance(page, web.Response):
            return page
        items, more = self._history([pool], *page, now=self.clock.market_ms())
        return web.json_response({"success": True, "data": {"items": items, "hasNext": more}})

    async def price(self, request: web.Request) -> web.Response:
        denied = self._admit(request)
        if denied is not None:
            return denied
        token = self.tokens.get(request.query.get("address", ""))
        if token is None:
            return _fail(400, "address is not a known token")
        now = self.clock.market_ms()
        data: dict[str, object] = {
            "value": token.usd_price,
            "updateUnixTime": now // 1000,
            "updateHumanTime": datetime.fromtimestamp(now / 1000, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "priceChange24h": 0.0,
            "priceInNative": token.usd_price / SOL.usd_price,
            "isScaledUiToken": False,
        }
        if request.query.get("include_liquidity") == "true":
            data["liquidity"] = sum(
                p.liquidity_usd for p in POOLS if token.address in (p.base.address, p.quote.address)
            )
        return web.json_response({"success": True, "data": data})

    async def pair_overview(self, request: web.Request) -> web.Response:
        denied = self._admit(request)
        if denied is not None:
            return denied
        pool = self.pools.get(request.query.get("address", ""))
        if pool is None:
            return _fail(400, "address is not a known pair")
        now = self.clock.market_ms()
        swaps = [
            s
            for m in range((now - DAY_MS) // MINUTE_MS, now // MINUTE_MS + 1)
            for s in self.swaps(pool, m)
            if _unix(s) * 1000 <= now
        ]
        volume_base = sum(abs(_leg_change(s, "base")) for s in swaps)
        volume_quote = sum(abs(_leg_change(s, "quote")) for s in swaps)
        token = {
            "address": "",
            "decimals": 0,
            "icon": "",
            "symbol": "",
            "is_scaled_ui_token": False,
            "multiplier": 1,
        }
        data = {
            "address": pool.address,
            "base": {
                **token,
                "address": pool.base.address,
                "decimals": pool.base.decimals,
                "symbol": pool.base.symbol,
            },
            "quote": {
                **token,
                "address": pool.quote.address,
                "decimals": pool.quote.decimals,
                "symbol": pool.quote.symbol,
            },
            "created_at": "2024-01-01T00:00:00.000Z",
            "name": f"{pool.base.symbol}-{pool.quote.symbol}",
            "source": pool.source,
            "liquidity": pool.liquidity_usd,
            "liquidity_change_percentage_24h": None,
            "price": self.pool_price(pool, now),
            "trade_24h": len(swaps),
            "volume_24h": volume_quote * pool.quote.usd_price,
            "volume_24h_base": volume_base,
            "volume_24h_quote": volume_quote,
            "unique_wallet_24h": len({s["owner"] for s in swaps}),
        }
        return web.json_response({"success": True, "data": data})
