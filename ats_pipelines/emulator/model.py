"""Value types shared by the emulator's market sources, its protocol encoders and its tests.

Prices and sizes travel as Binance does: decimal strings with eight places. Sources that hold
integers (the synthetic market) format them exactly; sources that hold floats (recorded data)
format the shortest string that parses back to the same float, so a client reading the wire
recovers every recorded value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

WIRE_DECIMALS = 8


def units_to_str(value: int, decimals: int) -> str:
    """Binance-style decimal string of ``value * 10**-decimals`` (exact, eight places)."""
    if decimals > WIRE_DECIMALS:
        raise ValueError(f"{decimals} decimals do not fit Binance's {WIRE_DECIMALS}-place strings")
    scaled = int(value) * 10 ** (WIRE_DECIMALS - decimals)
    sign = "-" if scaled < 0 else ""
    scaled = abs(scaled)
    return f"{sign}{scaled // 100_000_000}.{scaled % 100_000_000:08d}"


def float_to_str(value: float) -> str:
    """Shortest positional string that parses back to exactly ``value``."""
    return np.format_float_positional(float(value), trim="-", unique=True)


@dataclass(frozen=True)
class SymbolSpec:
    """One spot market as exchangeInfo lists it."""

    symbol_id: str  # Binance id, e.g. BTCUSDT
    base: str
    quote: str
    price_decimals: int = 8
    qty_decimals: int = 8

    @property
    def unified(self) -> str:
        return f"{self.base}/{self.quote}"

    @property
    def stream_id(self) -> str:
        return self.symbol_id.lower()


class KlineRow(NamedTuple):
    """One kline in Binance's REST field order (plus the trade-id range the stream carries)."""

    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    close_time: int
    quote_volume: str
    trades: int
    taker_buy_base: str
    taker_buy_quote: str
    first_trade_id: int = -1
    last_trade_id: int = -1


class WireTrade(NamedTuple):
    """One public trade as /api/v3/trades and the ``@trade`` stream carry it."""

    trade_id: int
    ts: int
    price: str
    qty: str
    quote_qty: str
    buyer_maker: bool


@dataclass
class TradeBatch:
    """Trades of one symbol in id order, column-wise so large batches stay cheap."""

    symbol_id: str
    ids: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)
    qtys: list[str] = field(default_factory=list)
    buyer_maker: list[bool] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)  # price * qty; empty when unknown

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[WireTrade]:
        quotes = self.quotes or [""] * len(self.ids)
        return [
            WireTrade(i, t, p, q, c, m)
            for i, t, p, q, c, m in zip(
                self.ids, self.ts, self.prices, self.qtys, quotes, self.buyer_maker, strict=True
            )
        ]


Level = tuple[str, str]


@dataclass(frozen=True)
class DepthSnapshot:
    """A REST depth answer: the book as of update id ``last_update_id``, best levels first."""

    last_update_id: int
    bids: list[Level]
    asks: list[Level]


@dataclass(frozen=True)
class DepthDiff:
    """One ``depthUpdate`` event: every level changed in update ids ``first_id..last_id``."""

    symbol_id: str
    event_time: int
    first_id: int
    last_id: int
    bids: list[Level]
    asks: list[Level]
