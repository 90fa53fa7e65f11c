"""Clean rows of exchange data, shaped like the ``market`` tables they are written to.

Timestamps are epoch milliseconds (UTC), as ccxt and ``ats_pipelines.lib.bars`` use them.
"""

from __future__ import annotations

from typing import NamedTuple


class CandleRow(NamedTuple):
    """A closed trade-price candle (``market.candles``); ``ts`` is its open time."""

    exchange: str
    symbol: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    source: str


class TradeRow(NamedTuple):
    """A public trade (``market.trades``); ``side`` is the taker's side."""

    exchange: str
    symbol: str
    ts: int
    trade_id: str
    price: float
    amount: float
    cost: float | None
    side: str | None
    source: str


class OrderBookRow(NamedTuple):
    """Top-N levels of a book (``market.order_book_snapshots`` before metrics), best first."""

    exchange: str
    symbol: str
    ts: int
    bid_prices: list[float]
    bid_sizes: list[float]
    ask_prices: list[float]
    ask_sizes: list[float]
    sequence: int | None
    source: str


class LiquidityRow(NamedTuple):
    """A DEX pool's liquidity and price at one time (no table yet; the lead decides where)."""

    exchange: str  # the DEX, e.g. raydium
    symbol: str  # base/quote
    pool: str
    ts: int
    liquidity_usd: float
    price: float
    volume_24h_quote: float | None
    source: str
