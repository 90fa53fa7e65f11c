"""Integer OHLCV bars and their aggregation, the synthetic market's kline oracle.

Prices are integer ticks and sizes integer lots, so every volume and quote volume is an exact
integer sum: a 1h bar rolled up from 1m bars is identical to one built from the trades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ats_pipelines.emulator.model import KlineRow, units_to_str

I64 = np.int64


@dataclass
class Bars:
    """Column arrays of bars, one element per non-empty bucket, in time order."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote: np.ndarray
    count: np.ndarray
    taker_base: np.ndarray
    taker_quote: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    @staticmethod
    def empty() -> Bars:
        z = np.zeros(0, dtype=I64)
        return Bars(z, z, z, z, z, z, z, z, z, z, z, z)

    def take(self, index: np.ndarray | slice) -> Bars:
        return Bars(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Bars.empty()
        return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote",
    "count",
    "taker_base",
    "taker_quote",
    "first_id",
    "last_id",
)


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal consecutive ``keys``."""
    change = np.empty(len(keys), dtype=bool)
    change[0] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = len(keys) - 1
    return starts, ends


def bars_from_trades(
    bucket: np.ndarray, ids: np.ndarray, price: np.ndarray, qty: np.ndarray, buyer_maker: np.ndarray
) -> Bars:
    """One bar per distinct ``bucket`` value (bucket open times, non-decreasing, per trade)."""
    if len(bucket) == 0:
        return Bars.empty()
    starts, ends = _segments(bucket)
    quote = price * qty
    taker = ~buyer_maker
    return Bars(
        open_time=bucket[starts].astype(I64),
        open=price[starts],
        high=np.maximum.reduceat(price, starts),
        low=np.minimum.reduceat(price, starts),
        close=price[ends],
        volume=np.add.reduceat(qty, starts),
        quote=np.add.reduceat(quote, starts),
        count=(ends - starts + 1).astype(I64),
        taker_base=np.add.reduceat(np.where(taker, qty, 0), starts),
        taker_quote=np.add.reduceat(np.where(taker, quote, 0), starts),
        first_id=ids[starts],
        last_id=ids[ends],
    )


def rollup(bars: Bars, group_open: np.ndarray) -> Bars:
    """Aggregate consecutive bars sharing a ``group_open`` (one value per bar)."""
    if len(bars) == 0:
        return bars
    starts, ends = _segments(group_open)
    return Bars(
        open_time=group_open[starts].astype(I64),
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends],
        volume=np.add.reduceat(bars.volume, starts),
        quote=np.add.reduceat(bars.quote, starts),
        count=np.add.reduceat(bars.count, starts),
        taker_base=np.add.reduceat(bars.taker_base, starts),
        taker_quote=np.add.reduceat(bars.taker_quote, starts),
        first_id=bars.first_id[starts],
        last_id=bars.last_id[ends],
    )


def to_kline_rows(
    bars: Bars, close_times: list[int], price_decimals: int, qty_decimals: int
) -> list[KlineRow]:
    """Wire rows of ``bars``; ``close_times`` is each bar's last millisecond."""
    pd, qd, vd = price_decimals, qty_decimals, price_decimals + qty_decimals
    rows: list[KlineRow] = []
    cols = zip(
        bars.open_time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        close_times,
        bars.quote.tolist(),
        bars.count.tolist(),
        bars.taker_base.tolist(),
        bars.taker_quote.tolist(),
        bars.first_id.tolist(),
        bars.last_id.tolist(),
        strict=True,
    )
    for ot, o, h, lo, c, v, ct, q, n, tb, tq, fi, li in cols:
        rows.append(
            KlineRow(
                ot,
                units_to_str(o, pd),
                units_to_str(h, pd),
                units_to_str(lo, pd),
                units_to_str(c, pd),
                units_to_str(v, qd),
                ct,
                units_to_str(q, vd),
                n,
                units_to_str(tb, qd),
                units_to_str(tq, vd),
                fi,
                li,
            )
        )
    return rows
