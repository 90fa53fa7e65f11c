"""ccxt access with the platform's rules: retries, pagination, closed candles, clean rows.

One :class:`ExchangeClient` wraps one ccxt.pro exchange (which also does REST). REST calls go
through :func:`~ats_pipelines.exchange.retry.call_with_retry`; websocket watches reconnect with
the same backoff, resynchronise an order book after a sequence gap, and drop duplicate trades.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt

from ats_pipelines.exchange.errors import (
    ExchangeDataError,
    PermanentExchangeError,
    RetriesExhausted,
)
from ats_pipelines.exchange.hardened import hardened_class
from ats_pipelines.exchange.parsing import candle_rows, order_book_row, trade_rows
from ats_pipelines.exchange.retry import RetryPolicy, call_with_retry, parse_retry_after
from ats_pipelines.exchange.rows import CandleRow, OrderBookRow, TradeRow
from ats_pipelines.exchange.urls import SPOT_ONLY_OPTIONS, rehost_urls
from ats_pipelines.lib.timeframes import bucket_end_ms, floor_ms

log = logging.getLogger(__name__)
T = TypeVar("T")
SEEN_TRADE_IDS = 50_000  # per symbol, for dropping duplicates from the stream


def build_exchange(
    exchange_id: str,
    *,
    api_key: str | None = None,
    secret: str | None = None,
    rest_url: str | None = None,
    ws_url: str | None = None,
    spot_only: bool = True,
    timeout_ms: int = 10_000,
    options: dict[str, Any] | None = None,
) -> Any:
    """A (hardened) ccxt.pro exchange; ``rest_url``/``ws_url`` re-point every API host."""
    cls = hardened_class(exchange_id)
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": {"tradesLimit": 10_000},
    }
    if spot_only:
        config["options"].update(SPOT_ONLY_OPTIONS)
    config["options"].update(options or {})
    if api_key:
        config["apiKey"] = api_key
    if secret:
        config["secret"] = secret
    if rest_url:
        api = cls().describe()["urls"]["api"]
        config["urls"] = {"api": rehost_urls(api, rest_url, ws_url)}
    return cls(config)


class ExchangeClient:
    """REST and websocket market data of one exchange."""

    def __init__(
        self,
        exchange: Any,
        *,
        policy: RetryPolicy | None = None,
        stream_policy: RetryPolicy | None = None,
        page_limit: int = 1000,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.id: str = exchange.id
        self.policy = policy or RetryPolicy()
        self.stream_policy = stream_policy or RetryPolicy(max_attempts=20)
        self.page_limit = page_limit
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.stats: Counter[str] = Counter()
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}

    async def close(self) -> None:
        await self.exchange.close()

    async def __aenter__(self) -> ExchangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- REST ------------------------------------------------------------------------------------

    def _retry_after(self, exc: BaseException) -> float | None:
        return parse_retry_after(getattr(self.exchange, "last_response_headers", None))

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        async def counted() -> T:
            self.stats["requests"] += 1
            return await fn()

        return await call_with_retry(
            counted,
            what=what,
            policy=self.policy,
            rng=self.rng,
            sleep=self._sleep_counted,
            retry_after=self._retry_after,
        )

    async def _sleep_counted(self, seconds: float) -> None:
        self.stats["retries"] += 1
        await self.sleep(seconds)

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        return await self._call(
            f"{self.id} load_markets", lambda: self.exchange.load_markets(reload)
        )

    async def server_time_ms(self) -> int:
        return int(await self._call(f"{self.id} fetch_time", self.exchange.fetch_time))

    async def fetch_ohlcv_range(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int
    ) -> list[list[Any]]:
        """Closed candles opening in ``[start_ms, end_ms)``, page by page, none twice.

        Pages ask for at most ``page_limit`` rows between the next expected open and the end;
        each page continues from the bar after the last one received, so gaps in the
        exchange's data neither stop the walk nor repeat rows. The bar still open on the
        exchange's clock is never returned.
        """
        await self.load_markets()
        now = await self.server_time_ms()
        stop = min(end_ms, floor_ms(now, timeframe))  # bars opening before this have closed
        since = floor_ms(start_ms, timeframe)
        if since < start_ms:
            since = bucket_end_ms(since, timeframe)
        out: list[list[Any]] = []
        pages = 0
        while since < stop:
            page = await self._call(
                f"{self.id} fetch_ohlcv {symbol} {timeframe} since={since}",
                lambda s=since: self.exchange.fetch_ohlcv(
                    symbol, timeframe, since=s, limit=self.page_limit, params={"until": stop - 1}
                ),
            )
            pages += 1
            fresh = [row for row in page if since <= row[0] < stop]
            if not fresh:
                break
            out.extend(fresh)
            since = bucket_end_ms(fresh[-1][0], timeframe)
        log.info(
            "event=ohlcv_fetched exchange=%s symbol=%s timeframe=%s start=%s end=%s "
            "rows=%s pages=%s",
            self.id,
            symbol,
            timeframe,
            start_ms,
            end_ms,
            len(out),
            pages,
        )
        return out

    async def fetch_candles(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, source: str = "rest"
    ) -> list[CandleRow]:
        """:meth:`fetch_ohlcv_range` validated into ``market.candles`` rows."""
        raw = await self.fetch_ohlcv_range(symbol, timeframe, start_ms, end_ms)
        return candle_rows(self.id, symbol, timeframe, raw, source)

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        return await self._call(
            f"{self.id} fetch_order_book {symbol}",
            lambda: self.exchange.fetch_order_book(symbol, limit),
        )

    async def fetch_order_book_row(
        self, symbol: str, depth: int = 20, source: str = "rest"
    ) -> OrderBookRow:
        book = await self.fetch_order_book(symbol, depth)
        ts = book.get("timestamp") or await self.server_time_ms()
        return order_book_row(self.id, symbol, book, source, depth, ts)

    async def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return await self._call(
            f"{self.id} fetch_trades {symbol}",
            lambda: self.exchange.fetch_trades(symbol, since, limit),
        )

    async def fetch_trades_range(
        self,
        symbol: str,
        start_ms: int,
        end_ms: int,
        page_limit: int = 1000,
        window_ms: int = 3_600_000,
    ) -> list[dict[str, Any]]:
        """Every public trade with ``start_ms <= timestamp < end_ms``, oldest first, each once.

        Walks the range in windows of at most an hour (Binance's aggTrades rule); a full page
        continues from its last trade's time, and repeats at the seam are dropped by id.
        """
        await self.load_markets()
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        since = start_ms
        while since < end_ms:
            until = min(since + window_ms, end_ms)
            page = await self._call(
                f"{self.id} fetch_trades {symbol} since={since}",
                lambda s=since, u=until: self.exchange.fetch_trades(
                    symbol, s, page_limit, {"until": u - 1}
                ),
            )
            fresh = [
                t for t in page if str(t["id"]) not in seen and start_ms <= t["timestamp"] < end_ms
            ]
            seen.update(str(t["id"]) for t in fresh)
            out.extend(fresh)
            if len(page) < page_limit:
                since = until  # the window is exhausted
            elif fresh:
                since = page[-1]["timestamp"]  # a full page: more in this window
            else:
                log.warning(
                    "event=trades_page_stuck exchange=%s symbol=%s since=%s action=skip_one_ms",
                    self.id,
                    symbol,
                    since,
                )
                since += 1
        return out

    async def fetch_trade_rows(
        self, symbol: str, since: int | None = None, limit: int | None = None, source: str = "rest"
    ) -> list[TradeRow]:
        return trade_rows(self.id, await self.fetch_trades(symbol, since, limit), source)

    # -- websocket ---------------------------------------------------------------------------

    async def _watch(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One watch call; network failures reconnect with backoff, gaps resync at once."""
        failures = 0
        while True:
            try:
                return await fn()
            except ccxt.InvalidNonce as exc:  # a sequence gap: ccxt dropped the book
                self.stats["resyncs"] += 1
                log.warning("event=stream_resync what=%r error=%s", what, exc)
                failures += 1
                if failures > 3:  # gaps back to back: slow down like any other failure
                    await self._stream_backoff(what, failures - 3, exc)
            except (ccxt.NetworkError, OSError) as exc:
                # OSError: ccxt's websocket client raises the built-in ConnectionError
                # ("Cannot Send Message: Connection closed before send") when a socket closes
                # under a subscription, and asyncio/aiohttp timeouts are TimeoutError (OSError)
                self.stats["reconnects"] += 1
                failures += 1
                if not isinstance(exc, ccxt.NetworkError):
                    self._forget_closed_sockets()
                await self._stream_backoff(what, failures, exc)
            except ccxt.BaseError as exc:
                raise PermanentExchangeError(
                    f"{what}: {type(exc).__name__}: {exc} (permanent, not retried)"
                ) from exc

    def _forget_closed_sockets(self) -> None:
        """Drop ccxt's websocket clients whose socket is closed, so the next watch dials anew
        (ccxt forgets a client on its own only when it noticed the close itself)."""
        clients = getattr(self.exchange, "clients", None)
        if not isinstance(clients, dict):
            return
        for url, ws_client in list(clients.items()):
            closed = getattr(ws_client, "closed", None)
            if callable(closed) and closed():
                del clients[url]

    async def _stream_backoff(self, what: str, failures: int, exc: BaseException) -> None:
        policy = self.stream_policy
        if failures >= policy.max_attempts:
            raise RetriesExhausted(
                f"{what}: {failures} failures in a row; last {type(exc).__name__}: {exc}"
            ) from exc
        delay = policy.delay_s(failures - 1, self.rng, None)
        log.warning(
            "event=stream_reconnect what=%r failures=%s delay_s=%.3f error=%s",
            what,
            failures,
            delay,
            type(exc).__name__,
        )
        await self._sleep_counted(delay)

    def _fresh(self, symbol: str, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recent, seen = self._seen.setdefault(symbol, (deque(), set()))
        out = []
        for trade in trades:
            trade_id = str(trade.get("id"))
            if trade_id in seen:
                self.stats["duplicate_trades"] += 1
                continue
            seen.add(trade_id)
            recent.append(trade_id)
            if len(recent) > SEEN_TRADE_IDS:
                seen.discard(recent.popleft())
            out.append(trade)
        return out

    async def watch_trades(self, symbol: str, *, dedupe: bool = True) -> list[dict[str, Any]]:
        """New trades of ``symbol`` since the last call (ccxt unified), each id once.

        ``dedupe=False``: as ccxt delivers them, repeats included, for a caller that tracks
        ids itself (the streaming service: one id check per trade instead of two).
        """
        while True:
            trades = await self._watch(
                f"{self.id} watch_trades {symbol}", lambda: self.exchange.watch_trades(symbol)
            )
            if not dedupe:
                if trades:
                    return list(trades)
                continue
            fresh = self._fresh(symbol, list(trades))
            if fresh:
                return fresh

    async def watch_trades_for_symbols(self, symbols: list[str]) -> list[dict[str, Any]]:
        """New trades of any of ``symbols`` (one websocket stream set), each id once."""
        what = f"{self.id} watch_trades_for_symbols {','.join(symbols)}"
        while True:
            trades = await self._watch(
                what, lambda: self.exchange.watch_trades_for_symbols(symbols)
            )
            fresh = [t for t in trades if self._fresh(str(t.get("symbol")), [t])]
            if fresh:
                return fresh

    async def watch_trade_rows(self, symbol: str, source: str = "stream") -> list[TradeRow]:
        """:meth:`watch_trades` as validated rows; a bad trade raises ExchangeDataError."""
        return trade_rows(self.id, await self.watch_trades(symbol), source)

    async def watch_order_book(self, symbol: str, limit: int | None = None) -> Any:
        """The synchronised book of ``symbol`` after its next update (ccxt OrderBook)."""
        return await self._watch(
            f"{self.id} watch_order_book {symbol}",
            lambda: self.exchange.watch_order_book(symbol, limit),
        )


__all__ = ["ExchangeClient", "ExchangeDataError", "build_exchange"]
