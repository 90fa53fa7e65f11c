"""Order-book metrics (one book, or many snapshots at once) and a local L2 book fed by diffs.

A book side is a sequence of ``[price, size]`` levels, best first: bids descending, asks
ascending. Metrics:

* ``mid = (best bid + best ask) / 2``, ``spread = best ask - best bid``,
  ``spread_bps = spread / mid * 10_000``;
* ``imbalance_N = (bid size - ask size) / (bid size + ask size)`` over the best N levels of
  each side (fewer if the side is shorter), N in 1, 5, 10;
* ``bid_depth_5pct`` / ``ask_depth_5pct``: base size of the levels within ±5 % of mid.

Undefined values (an empty side, zero sizes) are ``None`` for one book and NaN in the arrays.
The scalar and the vectorised versions add sizes in the same order (best level outward), so they
agree bit for bit.

``L2Book`` keeps a local book from a REST snapshot plus Binance depth diffs and refuses to
continue across a sequence gap (``SequenceGap``): the caller then fetches a new snapshot.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

DEPTHS = (1, 5, 10)
BAND = 0.05
METRIC_NAMES = (
    "mid",
    "spread",
    "spread_bps",
    "imbalance_1",
    "imbalance_5",
    "imbalance_10",
    "bid_depth_5pct",
    "ask_depth_5pct",
)

Levels = Sequence[Sequence[float]] | np.ndarray


class BookMetrics(NamedTuple):
    mid: float | None
    spread: float | None
    spread_bps: float | None
    imbalance_1: float | None
    imbalance_5: float | None
    imbalance_10: float | None
    bid_depth_5pct: float | None
    ask_depth_5pct: float | None


_EMPTY = BookMetrics(None, None, None, None, None, None, None, None)


def _leading_sum(levels: Sequence[Sequence[float]], n: int) -> float:
    total = 0.0
    for level in levels[:n]:
        total += level[1]
    return total


def _imbalance(bid: float, ask: float) -> float | None:
    total = bid + ask
    return (bid - ask) / total if total > 0 else None


def book_metrics(bids: Levels, asks: Levels, *, band: float = BAND) -> BookMetrics:
    """Metrics of one book; ``bids`` descending and ``asks`` ascending, best first."""
    bid_levels = bids.tolist() if isinstance(bids, np.ndarray) else bids
    ask_levels = asks.tolist() if isinstance(asks, np.ndarray) else asks
    if len(bid_levels) == 0 or len(ask_levels) == 0:
        return _EMPTY
    imb_1, imb_5, imb_10 = (
        _imbalance(_leading_sum(bid_levels, n), _leading_sum(ask_levels, n)) for n in DEPTHS
    )
    best_bid, best_ask = bid_levels[0][0], ask_levels[0][0]
    mid = (best_bid + best_ask) / 2
    spread = best_ask - best_bid
    low, high = mid * (1 - band), mid * (1 + band)
    bid_depth = ask_depth = 0.0
    for price, size in bid_levels:
        if price < low:
            break
        bid_depth += size
    for price, size in ask_levels:
        if price > high:
            break
        ask_depth += size
    return BookMetrics(
        mid,
        spread,
        spread / mid * 10_000 if mid > 0 else None,
        imb_1,
        imb_5,
        imb_10,
        bid_depth,
        ask_depth,
    )


def book_metrics_batch(
    bid_prices: np.ndarray,
    bid_sizes: np.ndarray,
    ask_prices: np.ndarray,
    ask_sizes: np.ndarray,
    *,
    band: float = BAND,
) -> dict[str, np.ndarray]:
    """Metrics of many snapshots: 2-D arrays (snapshot × level, best first, NaN-padded)."""
    bp, bs = np.atleast_2d(bid_prices).astype(float), np.atleast_2d(bid_sizes).astype(float)
    ap, as_ = np.atleast_2d(ask_prices).astype(float), np.atleast_2d(ask_sizes).astype(float)
    bp, bs = _widen(bp, 1), _widen(bs, 1)
    ap, as_ = _widen(ap, 1), _widen(as_, 1)
    bs0, as0 = np.nan_to_num(bs, nan=0.0), np.nan_to_num(as_, nan=0.0)
    best_bid, best_ask = bp[:, 0], ap[:, 0]
    valid = ~np.isnan(best_bid) & ~np.isnan(best_ask)
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = (best_bid + best_ask) / 2
        spread = best_ask - best_bid
        out: dict[str, np.ndarray] = {
            "mid": mid,
            "spread": spread,
            "spread_bps": np.where(mid > 0, spread / mid * 10_000, np.nan),
        }
        # cumsum adds left to right, exactly like the scalar loop (zero padding changes nothing)
        bid_cum, ask_cum = np.cumsum(bs0, axis=1), np.cumsum(as0, axis=1)
        for n in DEPTHS:
            b = bid_cum[:, min(n, bid_cum.shape[1]) - 1]
            a = ask_cum[:, min(n, ask_cum.shape[1]) - 1]
            total = b + a
            out[f"imbalance_{n}"] = np.where(valid & (total > 0), (b - a) / total, np.nan)
        # levels are sorted, so "within the band" is a prefix of each side
        in_bid = np.cumprod(bp >= (mid * (1 - band))[:, None], axis=1).astype(bool)
        in_ask = np.cumprod(ap <= (mid * (1 + band))[:, None], axis=1).astype(bool)
        bid_depth = np.cumsum(np.where(in_bid, bs0, 0.0), axis=1)[:, -1]
        ask_depth = np.cumsum(np.where(in_ask, as0, 0.0), axis=1)[:, -1]
        out["bid_depth_5pct"] = np.where(valid, bid_depth, np.nan)
        out["ask_depth_5pct"] = np.where(valid, ask_depth, np.nan)
    for name in ("mid", "spread", "spread_bps"):
        out[name] = np.where(valid, out[name], np.nan)
    return out


def _widen(array: np.ndarray, width: int) -> np.ndarray:
    if array.shape[1] >= width:
        return array
    pad = np.full((array.shape[0], width - array.shape[1]), np.nan)
    return np.hstack([array, pad])


def _padded(series: pl.Series) -> np.ndarray:
    width = max(int(series.list.len().max() or 0), 1)  # type: ignore[arg-type]
    gathered = series.list.gather(list(range(width)), null_on_oob=True).list.to_array(width)
    return gathered.to_numpy().astype(float)


def book_metrics_frame(frame: pl.DataFrame, *, band: float = BAND) -> pl.DataFrame:
    """``frame`` with list columns bid_prices/bid_sizes/ask_prices/ask_sizes plus the metrics."""
    metrics = book_metrics_batch(
        _padded(frame["bid_prices"]),
        _padded(frame["bid_sizes"]),
        _padded(frame["ask_prices"]),
        _padded(frame["ask_sizes"]),
        band=band,
    )
    return frame.with_columns(
        pl.Series(name, metrics[name], dtype=pl.Float64).fill_nan(None) for name in METRIC_NAMES
    )


# --- the local book ---------------------------------------------------------------------------


class BookOutOfSync(RuntimeError):
    """The local book cannot be trusted; load a fresh REST snapshot."""


class SequenceGap(BookOutOfSync):
    """A diff does not continue the previous one; ``expected`` and ``got`` name the ids."""

    def __init__(self, symbol: str, expected: str, got: str) -> None:
        super().__init__(
            f"{symbol or 'book'}: sequence gap, expected {expected}, got {got}; "
            "resync from a REST snapshot"
        )
        self.symbol, self.expected, self.got = symbol, expected, got


class BookSnapshot(NamedTuple):
    """Top-N levels as parallel lists (best first), the update id, and the metrics."""

    sequence: int
    bid_prices: list[float]
    bid_sizes: list[float]
    ask_prices: list[float]
    ask_sizes: list[float]
    metrics: BookMetrics


class _Side:
    """Price → size with a sorted price list (ascending) for ordered reads."""

    __slots__ = ("prices", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[float, float] = {}
        self.prices: list[float] = []

    def set(self, price: float, size: float) -> None:
        if size == 0.0:
            if self.sizes.pop(price, None) is not None:  # removing an unknown level is normal
                del self.prices[bisect_left(self.prices, price)]
        elif price in self.sizes:
            self.sizes[price] = size
        else:
            self.sizes[price] = size
            insort(self.prices, price)


class L2Book:
    """Local order book from a Binance REST snapshot and ``depthUpdate`` diffs.

    Spot rules: drop diffs with ``u <= lastUpdateId``; the first kept one must have
    ``U <= lastUpdateId + 1 <= u``; each later ``U`` must be the previous ``u + 1``.
    Futures (``futures=True``): drop ``u < lastUpdateId``; the first must have
    ``U <= lastUpdateId <= u``; each later ``pu`` must be the previous ``u``.
    """

    def __init__(self, symbol: str = "", *, futures: bool = False) -> None:
        self.symbol, self.futures = symbol, futures
        self._bids, self._asks = _Side(), _Side()
        self._last: int | None = None
        self._first_pending = False
        self.applied = self.dropped = 0

    @property
    def synced(self) -> bool:
        return self._last is not None

    @property
    def last_update_id(self) -> int | None:
        return self._last

    def load_snapshot(
        self, last_update_id: int, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]
    ) -> None:
        self._bids, self._asks = _Side(), _Side()
        for price, size in bids:
            self._bids.set(float(price), float(size))
        for price, size in asks:
            self._asks.set(float(price), float(size))
        self._last, self._first_pending = int(last_update_id), True

    def apply(
        self,
        first_id: int,
        final_id: int,
        bids: Iterable[Sequence[Any]],
        asks: Iterable[Sequence[Any]],
        prev_final_id: int | None = None,
    ) -> bool:
        """Apply one diff; False if it predates the book, ``SequenceGap`` if ids jump."""
        last = self._last
        if last is None:
            raise BookOutOfSync(f"{self.symbol or 'book'}: no snapshot loaded (or lost sync)")
        if final_id < last or (not self.futures and final_id == last):
            self.dropped += 1
            return False
        if self._first_pending:
            target = last if self.futures else last + 1
            if not first_id <= target <= final_id:
                self._last = None
                raise SequenceGap(
                    self.symbol, f"first diff spanning {target}", f"U={first_id} u={final_id}"
                )
        elif self.futures:
            if prev_final_id != last:
                self._last = None
                raise SequenceGap(self.symbol, f"pu={last}", f"pu={prev_final_id}")
        elif first_id != last + 1:
            self._last = None
            raise SequenceGap(self.symbol, f"U={last + 1}", f"U={first_id}")
        for price, size in bids:
            self._bids.set(float(price), float(size))
        for price, size in asks:
            self._asks.set(float(price), float(size))
        self._last, self._first_pending = final_id, False
        self.applied += 1
        return True

    def apply_event(self, event: Mapping[str, Any]) -> bool:
        """``apply`` for a Binance ``depthUpdate`` payload (keys U, u, pu, b, a)."""
        return self.apply(event["U"], event["u"], event["b"], event["a"], event.get("pu"))

    def top(self, n: int) -> tuple[list[list[float]], list[list[float]]]:
        """Best ``n`` levels of each side as ``[price, size]``: bids descending, asks ascending."""
        bid_prices = self._bids.prices[-n:][::-1] if n > 0 else []
        ask_prices = self._asks.prices[:n]
        bids, asks = self._bids.sizes, self._asks.sizes
        return [[p, bids[p]] for p in bid_prices], [[p, asks[p]] for p in ask_prices]

    @property
    def best_bid(self) -> tuple[float, float] | None:
        return (
            (self._bids.prices[-1], self._bids.sizes[self._bids.prices[-1]])
            if self._bids.prices
            else None
        )

    @property
    def best_ask(self) -> tuple[float, float] | None:
        return (
            (self._asks.prices[0], self._asks.sizes[self._asks.prices[0]])
            if self._asks.prices
            else None
        )

    def metrics(self, *, band: float = BAND) -> BookMetrics:
        """Metrics over the whole local book (depth is not cut at the top N)."""
        best_bid, best_ask = self.best_bid, self.best_ask
        if best_bid is None or best_ask is None:
            return book_metrics([], [])
        mid = (best_bid[0] + best_ask[0]) / 2
        # enough levels for imbalance_10 and for everything inside the band
        n_bid = len(self._bids.prices) - bisect_left(self._bids.prices, mid * (1 - band))
        n_ask = bisect_right(self._asks.prices, mid * (1 + band))
        bids, _ = self.top(max(n_bid, DEPTHS[-1]))
        _, asks = self.top(max(n_ask, DEPTHS[-1]))
        return book_metrics(bids, asks, band=band)

    def snapshot(self, n: int = 20, *, band: float = BAND) -> BookSnapshot:
        if self._last is None:
            raise BookOutOfSync(f"{self.symbol or 'book'}: not synced")
        bids, asks = self.top(n)
        return BookSnapshot(
            self._last,
            [p for p, _ in bids],
            [s for _, s in bids],
            [p for p, _ in asks],
            [s for _, s in asks],
            self.metrics(band=band),
        )
