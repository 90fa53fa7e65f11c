"""The synthetic market's history: a seeded price path and the trades on it, a UTC day at a time.

Everything is a pure function of (seed, symbol, time): a day's price path and its per-minute
trade counts are drawn from generators seeded with (seed, symbol, day), and the trades of each
ten-minute chunk from (seed, symbol, day, chunk). Any chunk can be produced alone, in any order,
so old ranges cost a chunk's generation rather than a replay from the start, and high trade
rates never materialise a whole day. Only the price level carries over between days (the path
is a random walk), and that is one float per day.

Every minute holds at least one trade, so every 1m kline is the aggregation of real trades and
there are no empty bars to invent.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ats_pipelines.emulator.bars import Bars, bars_from_trades
from ats_pipelines.emulator.intervals import DAY_MS, MINUTE_MS
from ats_pipelines.emulator.model import SymbolSpec

MINUTES_PER_DAY = 1440
CHUNK_MINUTES = 10
CHUNK_MS = CHUNK_MINUTES * MINUTE_MS
CHUNKS_PER_DAY = MINUTES_PER_DAY // CHUNK_MINUTES
_TRADE_CACHE_CHUNKS = 48
_BAR_CACHE_CHUNKS = 50_000  # 10 bars each: about a year of one symbol
_FIRST_TRADE_ID = 1_000_000


@dataclass(frozen=True)
class SyntheticSymbol:
    """Parameters of one synthetic market. ``price_decimals + qty_decimals`` must be <= 8 so
    quote volumes are exact on the wire."""

    spec: SymbolSpec
    start_price: float
    trades_per_minute: float = 40.0
    sigma_per_minute: float = 0.0008
    half_spread_ticks: int = 1
    lot_log_mean: float = 3.0  # log of a typical trade size in lots


@dataclass
class TradeArrays:
    """Trades of one symbol (a chunk, or any span), sorted by time then id."""

    ts: np.ndarray
    ids: np.ndarray
    price: np.ndarray  # ticks
    qty: np.ndarray  # lots
    buyer_maker: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class SymbolHistory:
    """Deterministic price path, trades and 1m bars of one synthetic symbol."""

    def __init__(
        self, symbol: SyntheticSymbol, seed: int, anchor_day: int, trade_rate_scale: float = 1.0
    ) -> None:
        self.symbol = symbol
        self.seed = seed
        self.anchor_day = anchor_day
        self.rate = max(symbol.trades_per_minute * trade_rate_scale - 1.0, 0.0)
        self._key = zlib.crc32(symbol.spec.symbol_id.encode())
        self._ticks_per_unit = 10**symbol.spec.price_decimals
        self._log0 = math.log(symbol.start_price)
        self._day_start_log: dict[int, float] = {anchor_day: self._log0}
        self._paths: dict[int, np.ndarray] = {}
        self._counts: dict[int, np.ndarray] = {}
        self._first_ids: dict[int, int] = {anchor_day: _FIRST_TRADE_ID}
        self._minute_offsets: dict[int, np.ndarray] = {}
        self._trades: OrderedDict[int, TradeArrays] = OrderedDict()
        self._bars: OrderedDict[int, Bars] = OrderedDict()
        # the publisher generates the next chunk in a thread (:meth:`prefetch`) while the
        # loop publishes this one: the lock guards the caches (a chunk is pure in its inputs,
        # so whichever thread generates it gets the same arrays)
        self._lock = threading.RLock()

    @property
    def history_start(self) -> int:
        return self.anchor_day * DAY_MS

    def _rng(self, day: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._key, day, stream])

    def log_path(self, day: int) -> np.ndarray:
        """Log mid price at each minute boundary of ``day`` (1441 points)."""
        path = self._paths.get(day)
        if path is not None:
            return path
        with self._lock:
            return self._log_path(day)

    def _log_path(self, day: int) -> np.ndarray:
        path = self._paths.get(day)
        if path is not None:
            return path
        if day < self.anchor_day:  # before history the market has no moves
            return np.full(MINUTES_PER_DAY + 1, self._log0)
        known = max(d for d in self._day_start_log if d <= day)
        for d in range(known, day):  # walk forward from the nearest known day
            self._log_path(d)
        start = self._day_start_log[day]
        sigma = self.symbol.sigma_per_minute
        # A weak pull towards the start price keeps a month-long walk in a plausible range.
        pull = -0.05 * (start - self._log0) / MINUTES_PER_DAY
        steps = self._rng(day, 1).normal(pull, sigma, MINUTES_PER_DAY)
        path = start + np.concatenate(([0.0], np.cumsum(steps)))
        self._paths[day] = path
        self._day_start_log[day + 1] = float(path[-1])
        return path

    def mid_ticks(self, t_ms: int) -> int:
        """Mid price in ticks at ``t_ms`` (straight line between minute points, log space)."""
        day, rest = divmod(t_ms, DAY_MS)
        minute, ms = divmod(rest, MINUTE_MS)
        path = self.log_path(day)
        log_mid = path[minute] + (ms / MINUTE_MS) * (path[minute + 1] - path[minute])
        return max(
            round(math.exp(log_mid) * self._ticks_per_unit), self.symbol.half_spread_ticks + 1
        )

    def day_counts(self, day: int) -> np.ndarray:
        counts = self._counts.get(day)
        if counts is None:
            counts = self._rng(day, 2).poisson(self.rate, MINUTES_PER_DAY).astype(np.int64) + 1
            self._counts[day] = counts
        return counts

    def first_id(self, day: int) -> int:
        """Id of the first trade of ``day`` (ids run on without gaps across days)."""
        known = self._first_ids.get(day)
        if known is not None:
            return known
        with self._lock:
            return self._first_id(day)

    def _first_id(self, day: int) -> int:
        known = self._first_ids.get(day)
        if known is not None:
            return known
        if day < self.anchor_day:
            return _FIRST_TRADE_ID
        last = max(d for d in self._first_ids if d < day)
        next_id = self._first_ids[last]
        for d in range(last, day):
            next_id += int(self.day_counts(d).sum())
            self._first_ids[d + 1] = next_id
        return next_id

    def _offsets(self, day: int) -> np.ndarray:
        """Trades before each minute of ``day`` (prefix sums of its counts, 1441 values)."""
        offsets = self._minute_offsets.get(day)
        if offsets is None:
            offsets = np.concatenate(([0], np.cumsum(self.day_counts(day))))
            self._minute_offsets[day] = offsets
        return offsets

    def chunk_of_id(self, trade_id: int) -> int:
        """The chunk holding ``trade_id`` (ids before history map to the first chunk)."""
        day = self.anchor_day
        while self.first_id(day + 1) <= trade_id:
            day += 1
        minute = (
            int(np.searchsorted(self._offsets(day), trade_id - self.first_id(day), side="right"))
            - 1
        )
        return day * CHUNKS_PER_DAY + max(minute, 0) // CHUNK_MINUTES

    def chunk_trades(self, chunk: int) -> TradeArrays:
        """Trades of ten-minute chunk number ``chunk`` (= time // CHUNK_MS)."""
        with self._lock:
            cached = self._trades.get(chunk)
            if cached is not None:
                self._trades.move_to_end(chunk)
                return cached
        trades = self._generate(chunk)  # outside the lock: the other thread keeps publishing
        with self._lock:
            cached = self._trades.get(chunk)
            if cached is not None:  # generated meanwhile by the other thread: same arrays
                return cached
            self._trades[chunk] = trades
            if len(self._trades) > _TRADE_CACHE_CHUNKS:
                self._trades.popitem(last=False)
        return trades

    def has_chunk(self, chunk: int) -> bool:
        return chunk in self._trades

    def prefetch(self, chunk: int) -> None:
        """Generate ``chunk`` now (from a worker thread), so publishing it later is a lookup:
        at 60x a ten-minute chunk is ten wall seconds, and generating it inside a publisher
        tick stalled every stream for ~100 ms each time."""
        self.chunk_trades(chunk)

    def _generate(self, chunk: int) -> TradeArrays:
        sym = self.symbol
        day, part = divmod(chunk, CHUNKS_PER_DAY)
        first_minute = part * CHUNK_MINUTES
        counts = self.day_counts(day)[first_minute : first_minute + CHUNK_MINUTES]
        n = int(counts.sum())
        rng = np.random.default_rng([self.seed, self._key, day, 3, part])
        minute_of_trade = np.repeat(
            np.arange(first_minute, first_minute + CHUNK_MINUTES, dtype=np.int64), counts
        )
        local = np.sort(minute_of_trade * MINUTE_MS + rng.integers(0, MINUTE_MS, n))
        minute = local // MINUTE_MS
        frac = (local % MINUTE_MS) / MINUTE_MS
        path = self.log_path(day)
        rising = path[minute + 1] > path[minute]
        log_mid = (
            path[minute]
            + frac * (path[minute + 1] - path[minute])
            + rng.normal(0.0, sym.sigma_per_minute * 0.25, n)
        )
        mid = np.rint(np.exp(log_mid) * self._ticks_per_unit).astype(np.int64)
        # Takers lean with the move: more buys while the price rises.
        is_buy = rng.random(n) < np.where(rising, 0.6, 0.4)
        half = sym.half_spread_ticks
        price = np.maximum(mid + np.where(is_buy, half, -half), 1)
        qty = np.maximum(np.rint(np.exp(rng.normal(sym.lot_log_mean, 1.1, n))), 1).astype(np.int64)
        # Trades of one millisecond are one matching pass: a taker sweeping the book fills buys
        # at rising and sells at falling prices (ccxt's suite checks exactly this).
        order = np.lexsort((np.where(is_buy, price, -price), ~is_buy, local))
        local, price, qty, is_buy = local[order], price[order], qty[order], is_buy[order]
        first = self.first_id(day) + int(self._offsets(day)[first_minute])
        ids = first + np.arange(n, dtype=np.int64)
        return TradeArrays(day * DAY_MS + local, ids, price, qty, ~is_buy)

    def chunk_bars(self, chunk: int) -> Bars:
        """The chunk's 1m bars (ten of them: every minute trades)."""
        cached = self._bars.get(chunk)
        if cached is not None:
            return cached
        t = self.chunk_trades(chunk)
        bars = bars_from_trades(t.ts - t.ts % MINUTE_MS, t.ids, t.price, t.qty, t.buyer_maker)
        with self._lock:
            self._bars[chunk] = bars
            if len(self._bars) > _BAR_CACHE_CHUNKS:
                self._bars.popitem(last=False)
        return bars
