"""Rows the service writes, built column-wise: bars (``market.candles``), trades, book
snapshots, and rejections for ``ops.quarantine``.

Stored sums are rounded to the market's precision. A bar's volume is the exact sum of decimal
amounts, but the aggregator adds their binary floats (``math.fsum``, correctly rounded for the
floats it is given), which can sit an ulp away from the float of the exact decimal sum — what
the exchange's own kline carries. Rounding to the amount's decimals (and price + amount
decimals for quote volume) recovers the exact decimal sum whenever the accumulated float error
is below half a unit of the last decimal, which holds with many orders of magnitude to spare
for any real bar. Stream bars and REST klines of the same minute are then equal bit for bit,
and the VWAP is computed from the rounded sums, exactly as for a healed (REST) bar.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ats_pipelines.lib.bars import Bar
from ats_pipelines.lib.book import METRIC_NAMES, BookMetrics
from ats_pipelines.lib.tables import BOOK_LEVELS, BOOK_METRICS, CANDLES, ORDER_BOOK_SNAPSHOTS
from ats_pipelines.lib.validation import payload_json

CANDLE_VALUES = CANDLES.values
_TS = pa.timestamp("us", tz="UTC")


def _decimals(step: Any, mode: int | None) -> int | None:
    """Decimal places of a ccxt precision value (tick size or places, per precision mode)."""
    if step is None or mode == 3:  # ccxt SIGNIFICANT_DIGITS: no fixed decimals
        return None
    if mode == 2:  # ccxt DECIMAL_PLACES
        return int(step)
    try:
        exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    except (ValueError, ArithmeticError):
        return None
    return max(0, -int(exponent)) if isinstance(exponent, int) else None


@dataclass(frozen=True)
class Precision:
    """Decimal places of prices and amounts of one market (``None``: unknown, no rounding)."""

    price: int | None = None
    amount: int | None = None

    @classmethod
    def of_market(cls, market: dict[str, Any] | None, precision_mode: int | None) -> Precision:
        if not market:
            return cls()
        p = market.get("precision") or {}
        return cls(
            _decimals(p.get("price"), precision_mode), _decimals(p.get("amount"), precision_mode)
        )

    def volume(self, value: float) -> float:
        return value if self.amount is None else round(value, self.amount)

    def quote(self, value: float) -> float:
        if self.amount is None or self.price is None:
            return value
        return round(value, self.amount + self.price)


def vwap(quote: float | None, volume: float, close: float, low: float, high: float) -> float:
    """``quote / volume`` kept inside ``[low, high]`` (as ``lib.bars``); ``close`` when empty."""
    if quote is None or volume <= 0:
        return close
    return min(max(quote / volume, low), high)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def bar_values(bar: Bar, precision: Precision) -> dict[str, Any]:
    """A final bar's stored values (rounded sums, VWAP from them), ``ts`` in epoch ms."""
    volume = precision.volume(bar.volume)
    quote = precision.quote(bar.quote_volume)
    return {
        "ts": bar.ts,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": volume,
        "quote_volume": quote,
        "trade_count": bar.trade_count,
        "vwap": vwap(quote, volume, bar.close, bar.low, bar.high),
        "taker_buy_volume": precision.volume(bar.taker_buy_volume),
    }


def candles_table(
    exchange: str,
    symbol: str,
    timeframes: Sequence[str],
    values: Sequence[dict[str, Any]],
    source: str,
) -> pa.Table:
    """``market.candles`` rows from :func:`bar_values` dicts (one timeframe per dict)."""
    n = len(values)
    return pa.table(
        {
            "exchange": pa.array([exchange] * n, pa.string()),
            "symbol": pa.array([symbol] * n, pa.string()),
            "timeframe": pa.array(list(timeframes), pa.string()),
            "ts": pa.array([utc(v["ts"]) for v in values], _TS),
            **{
                name: pa.array([v[name] for v in values], CANDLES.column(name).arrow)
                for name in CANDLE_VALUES
            },
            "source": pa.array([source] * n, pa.string()),
        }
    )


class TradeColumns:
    """Applied trades of one symbol, gathered column-wise between writer hand-offs."""

    __slots__ = ("amount", "ids", "price", "received", "side", "ts")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.ids: list[str] = []
        self.price: list[float] = []
        self.amount: list[float] = []
        self.side: list[str | None] = []
        self.received: list[float] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self, ts: int, trade_id: str, price: float, amount: float, side: str | None, received: float
    ) -> None:
        self.ts.append(ts)
        self.ids.append(trade_id)
        self.price.append(price)
        self.amount.append(amount)
        self.side.append(side)
        self.received.append(received)

    def table(
        self, exchange: str, symbol: str, precision: Precision, source: str = "stream"
    ) -> pa.Table:
        n = len(self.ids)
        cost = [precision.quote(p * a) for p, a in zip(self.price, self.amount, strict=True)]
        return pa.table(
            {
                "exchange": pa.array([exchange] * n, pa.string()),
                "symbol": pa.array([symbol] * n, pa.string()),
                "ts": pa.array([t * 1000 for t in self.ts], pa.int64()).cast(_TS),
                "trade_id": pa.array(self.ids, pa.string()),
                "price": pa.array(self.price, pa.float64()),
                "amount": pa.array(self.amount, pa.float64()),
                "cost": pa.array(cost, pa.float64()),
                "side": pa.array(self.side, pa.string()),
                "source": pa.array([source] * n, pa.string()),
                "received_at": pa.array(
                    [int(r * 1_000_000) for r in self.received], pa.int64()
                ).cast(_TS),
            }
        )


def snapshot_row(
    exchange: str,
    symbol: str,
    ts: int,
    sequence: int | None,
    bids: Sequence[Sequence[float]],
    asks: Sequence[Sequence[float]],
    metrics: BookMetrics,
    source: str = "stream",
) -> dict[str, Any]:
    """One ``market.order_book_snapshots`` row (top levels as arrays, best first)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "ts": utc(ts),
        "sequence": sequence,
        "bid_prices": [float(lvl[0]) for lvl in bids],
        "bid_sizes": [float(lvl[1]) for lvl in bids],
        "ask_prices": [float(lvl[0]) for lvl in asks],
        "ask_sizes": [float(lvl[1]) for lvl in asks],
        **{name: _finite(getattr(metrics, name)) for name in METRIC_NAMES},
        "source": source,
    }


_SNAPSHOT_SCHEMA = ORDER_BOOK_SNAPSHOTS.arrow_schema(
    ("exchange", "symbol", "ts", "sequence", *BOOK_LEVELS, *BOOK_METRICS, "source"), strict=False
)


def snapshots_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=_SNAPSHOT_SCHEMA)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Rejection:
    """One input message refused, shaped for ``ops.quarantine``."""

    rule: str
    reason: str
    location: str
    exchange: str
    symbol: str
    ts: int | None
    payload: dict[str, Any]
    timeframe: str | None = None


_REJECT_SCHEMA = pa.schema(
    [
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("location", pa.string()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("timeframe", pa.string()),
        ("ts", _TS),
        ("payload", pa.string()),
        ("row_hash", pa.string()),
        ("row", pa.int64()),
    ]
)


def rejections_table(rejections: Iterable[Rejection]) -> pa.Table:
    """Rejections as the frame ``db.quarantine.quarantine`` takes (as Arrow, for spilling)."""
    rows = []
    for i, r in enumerate(rejections):
        payload = payload_json(r.payload)
        rows.append(
            {
                "rule": r.rule,
                "reason": r.reason,
                "location": r.location,
                "exchange": r.exchange,
                "symbol": r.symbol,
                "timeframe": r.timeframe,
                "ts": utc(r.ts) if r.ts is not None and 0 <= r.ts < 253402300800000 else None,
                "payload": payload,
                "row_hash": hashlib.sha256(payload.encode()).hexdigest(),
                "row": i,
            }
        )
    return pa.Table.from_pylist(rows, schema=_REJECT_SCHEMA)
