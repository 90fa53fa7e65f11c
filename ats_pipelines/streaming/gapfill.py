"""Trades of a run of missing trade ids, fetched over REST (see ``ingest`` for the tracking)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.retry import call_with_retry

RECENT_TRADES = 1000  # what Binance's public /api/v3/trades gives at most
AGG_WINDOW_MS = 3_600_000  # Binance's aggTrades: at most an hour between start and end


class TradeGapFiller:
    """Fetches the trades of a run of missing ids over REST.

    With an API key, Binance's ``historicalTrades`` pages from the first missing id. Without
    one, the latest 1000 trades come first (exact, one request); ids older than those are read
    from the public aggregate trades of the run's time window: an aggregate of one trade
    (``f == l``) is that trade exactly. Ids inside multi-trade aggregates cannot be split and
    stay missing (their bars are healed from klines).
    """

    def __init__(self, client: ExchangeClient, *, use_history: bool) -> None:
        self.client = client
        self.use_history = use_history and client.id == "binance"

    async def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return await call_with_retry(
            fn,
            what=f"{self.client.id} {what}",
            policy=self.client.policy,
            rng=self.client.rng,
            sleep=self.client.sleep,
        )

    async def _fetch(self, symbol: str, params: dict[str, Any], limit: int) -> list[dict]:
        exchange = self.client.exchange
        return await self._call(
            f"fetch_trades {symbol} {params}",
            lambda: exchange.fetch_trades(symbol, None, limit, params),
        )

    async def fetch(
        self,
        symbol: str,
        first: int,
        last: int | None,
        ts_lo: int | None = None,
        ts_hi: int | None = None,
    ) -> list[dict[str, Any]]:
        """Trades with ids in ``first..last`` (``None``: up to now; may include later ones);
        ``[ts_lo, ts_hi]`` bounds their times, for the aggregate-trade fallback."""
        if self.use_history:
            out: list[dict[str, Any]] = []
            next_id = first
            while next_id <= (first if last is None else last):
                page = await self._fetch(
                    symbol,
                    {"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": str(next_id)},
                    1000,
                )
                if not page:
                    break
                out.extend(page)
                next_id = max(int(t["id"]) for t in page) + 1
            return out
        if self.client.id != "binance":
            return await self._fetch(symbol, {}, RECENT_TRADES)
        recent = await self._fetch(symbol, {"fetchTradesMethod": "publicGetTrades"}, RECENT_TRADES)
        ids = [int(t["id"]) for t in recent if str(t.get("id", "")).isdigit()]
        oldest = min(ids, default=None)
        if ts_lo is None or (oldest is not None and oldest <= first):
            return recent
        bound = last if last is not None else 2**62
        older_last = bound if oldest is None else min(bound, oldest - 1)
        return await self._aggregated(symbol, first, older_last, ts_lo, ts_hi) + recent

    async def _aggregated(
        self, symbol: str, first: int, last: int, ts_lo: int, ts_hi: int | None
    ) -> list[dict[str, Any]]:
        """Single-trade aggregates covering ids ``first..last`` from ``ts_lo`` on, as ccxt
        unified trades."""
        exchange = self.client.exchange
        market_id = exchange.market(symbol)["id"]
        params: dict[str, Any] = {
            "symbol": market_id,
            "startTime": ts_lo,
            "endTime": ts_lo + AGG_WINDOW_MS - 1,
            "limit": 1000,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = await self._call(
                f"aggTrades {symbol} {params}",
                lambda p=dict(params): exchange.publicGetAggTrades(p),
            )
            for agg in page:
                if int(agg["f"]) == int(agg["l"]) and first <= int(agg["f"]) <= last:
                    out.append(_agg_trade(symbol, agg))
            if page:
                newest = page[-1]
                if int(newest["l"]) >= last or (ts_hi is not None and int(newest["T"]) > ts_hi):
                    return out
                params = {"symbol": market_id, "fromId": int(newest["a"]) + 1, "limit": 1000}
                continue
            if "fromId" in params:  # nothing newer yet
                return out
            params["startTime"] = params["endTime"] + 1  # an hour without trades: the next
            params["endTime"] = params["startTime"] + AGG_WINDOW_MS - 1
            if ts_hi is None or params["startTime"] > ts_hi:
                return out


def _agg_trade(symbol: str, agg: dict[str, Any]) -> dict[str, Any]:
    """A single-trade Binance aggregate as a ccxt unified trade."""
    return {
        "id": str(agg["f"]),
        "symbol": symbol,
        "timestamp": int(agg["T"]),
        "price": float(agg["p"]),
        "amount": float(agg["q"]),
        "side": "sell" if agg["m"] else "buy",
    }
