"""The seeded synthetic market: many symbols, a random-walk mid, trades, klines and L2 books.

Deterministic from (seed, start time): history covers ``history_days`` before the start, trades
and klines exist for any time up to the emulator's ``now``, and klines are exactly the
aggregation of the same trades the streams deliver, so tests can check any of them against
:meth:`SyntheticMarket.trades_between` (the oracle).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ats_pipelines.emulator.bars import Bars, bars_from_trades, rollup, to_kline_rows
from ats_pipelines.emulator.intervals import (
    DAY_MS,
    INTERVAL_MS,
    MINUTE_MS,
    interval_open,
    next_open,
)
from ats_pipelines.emulator.model import (
    DepthDiff,
    DepthSnapshot,
    KlineRow,
    SymbolSpec,
    TradeBatch,
    units_to_str,
)
from ats_pipelines.emulator.source import UnknownSymbol
from ats_pipelines.emulator.synthetic_book import SyntheticBook
from ats_pipelines.emulator.synthetic_history import (
    CHUNK_MS,
    SymbolHistory,
    SyntheticSymbol,
    TradeArrays,
)

# Closed 10-minute chunks of formatted 1m rows kept (~7 kB each): 28 days of 4 symbols.
CLOSED_ROW_CHUNKS = 16_384
KLINE_PUSH_MS = 1_000  # Binance pushes an open kline about once a second


def _sym(
    base: str, quote: str, price: float, pd: int, qd: int, rate: float, lot_mu: float
) -> SyntheticSymbol:
    return SyntheticSymbol(
        SymbolSpec(base + quote, base, quote, pd, qd), price, rate, lot_log_mean=lot_mu
    )


DEFAULT_SYMBOLS: tuple[SyntheticSymbol, ...] = (
    _sym("BTC", "USDT", 60_000.0, 2, 5, 60.0, 5.5),
    _sym("ETH", "USDT", 3_000.0, 2, 4, 50.0, 5.0),
    _sym("SOL", "USDT", 150.0, 2, 3, 40.0, 4.5),
    _sym("BNB", "USDT", 550.0, 2, 3, 30.0, 3.5),
    _sym("XRP", "USDT", 0.5, 4, 1, 40.0, 7.0),
    _sym("ADA", "USDT", 0.4, 4, 1, 30.0, 7.0),
    _sym("DOGE", "USDT", 0.12, 5, 0, 30.0, 6.0),
    _sym("LTC", "USDT", 80.0, 2, 3, 20.0, 4.0),
    _sym("LINK", "USDT", 15.0, 3, 2, 20.0, 5.0),
    _sym("AVAX", "USDT", 30.0, 2, 2, 20.0, 3.0),
    _sym("DOT", "USDT", 6.0, 3, 2, 20.0, 5.0),
    _sym("ETH", "BTC", 0.05, 5, 3, 20.0, 4.0),
)


def synthetic_symbols(count: int) -> list[SyntheticSymbol]:
    """The default symbols, then generated ``SYNnnn/USDT`` markets up to ``count``."""
    symbols = list(DEFAULT_SYMBOLS[:count])
    for i in range(len(symbols), count):
        price = float(1 + (i * 37) % 500)
        symbols.append(_sym(f"SYN{i:03d}", "USDT", price, 3, 2, 20.0, 4.0))
    return symbols


@dataclass(frozen=True)
class SyntheticConfig:
    """How the synthetic market is drawn; equal configs and start times give equal markets."""

    seed: int = 7
    history_days: int = 31
    symbol_count: int = len(DEFAULT_SYMBOLS)
    trade_rate_scale: float = 1.0
    book_depth: int = 150
    symbols: tuple[SyntheticSymbol, ...] = field(default=())

    def resolved_symbols(self) -> list[SyntheticSymbol]:
        return list(self.symbols) if self.symbols else synthetic_symbols(self.symbol_count)


@dataclass
class _KlineCursor:
    open_time: int
    pushed_at: int


class SyntheticMarket:
    """A :class:`~ats_pipelines.emulator.source.MarketSource` drawn from a seed."""

    def __init__(self, config: SyntheticConfig, start_ms: int) -> None:
        self.config = config
        self.start_ms = start_ms
        anchor_day = (start_ms - config.history_days * DAY_MS) // DAY_MS
        self.histories: dict[str, SymbolHistory] = {
            s.spec.symbol_id: SymbolHistory(s, config.seed, anchor_day, config.trade_rate_scale)
            for s in config.resolved_symbols()
        }
        self._books: dict[str, SyntheticBook] = {}
        self._trade_cursor: dict[str, int] = {}
        self._kline_cursor: dict[tuple[str, str], _KlineCursor] = {}
        self._closed_rows: dict[tuple[str, int], list[KlineRow]] = {}

    # -- lookup ------------------------------------------------------------------------------

    def specs(self) -> list[SymbolSpec]:
        return [h.symbol.spec for h in self.histories.values()]

    def history(self, symbol_id: str) -> SymbolHistory:
        try:
            return self.histories[symbol_id]
        except KeyError:
            raise UnknownSymbol(symbol_id) from None

    def book(self, symbol_id: str, now: int) -> SyntheticBook:
        """The true book of ``symbol_id`` advanced to ``now`` (the order-book oracle)."""
        book = self._books.get(symbol_id)
        if book is None:
            book = SyntheticBook(
                self.history(symbol_id), self.config.seed, self.start_ms, self.config.book_depth
            )
            self._books[symbol_id] = book
        book.advance(now)
        return book

    # -- trades --------------------------------------------------------------------------------

    def trades_between(self, symbol_id: str, start: int, end: int) -> TradeArrays:
        """Every trade with ``start <= ts < end`` (the trade and kline oracle)."""
        h = self.history(symbol_id)
        start = max(start, h.history_start)
        if end <= start:
            return _no_trades()
        parts = []
        for chunk in range(start // CHUNK_MS, (end - 1) // CHUNK_MS + 1):
            t = h.chunk_trades(chunk)
            lo, hi = np.searchsorted(t.ts, [start, end], side="left")
            if hi > lo:
                parts.append(_take(t, slice(lo, hi)))
        return _concat(parts)

    def _batch(self, symbol_id: str, t: TradeArrays, quotes: bool = True) -> TradeBatch:
        """Wire strings of ``t``; ``quotes`` (price x qty) only REST answers carry."""
        spec = self.history(symbol_id).symbol.spec
        pd, qd = spec.price_decimals, spec.qty_decimals
        prices, qtys = t.price.tolist(), t.qty.tolist()
        return TradeBatch(
            symbol_id,
            t.ids.tolist(),
            t.ts.tolist(),
            [units_to_str(p, pd) for p in prices],
            [units_to_str(q, qd) for q in qtys],
            t.buyer_maker.tolist(),
            [units_to_str(p * q, pd + qd) for p, q in zip(prices, qtys, strict=True)]
            if quotes
            else [],
        )

    def trades(
        self,
        symbol_id: str,
        now: int,
        limit: int,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> TradeBatch:
        h = self.history(symbol_id)
        stop = now if end is None else min(end, now)
        first_chunk = h.history_start // CHUNK_MS
        if from_id is not None or start is not None:
            chunk = h.chunk_of_id(from_id) if from_id is not None else (start or 0) // CHUNK_MS
            chunk = max(chunk, first_chunk)
            parts, count = [], 0
            while count < limit and chunk * CHUNK_MS <= stop:
                t = h.chunk_trades(chunk)
                keep = t.ts <= stop
                if from_id is not None:
                    keep &= t.ids >= from_id
                if start is not None:
                    keep &= t.ts >= start
                part = _take(t, keep)
                parts.append(part)
                count += len(part)
                chunk += 1
            return self._batch(symbol_id, _take(_concat(parts), slice(0, limit)))
        parts, count, chunk = [], 0, now // CHUNK_MS
        while count < limit and chunk >= first_chunk:
            t = h.chunk_trades(chunk)
            part = _take(t, t.ts <= now)
            parts.insert(0, part)
            count += len(part)
            chunk -= 1
        picked = _concat(parts)
        return self._batch(symbol_id, _take(picked, slice(max(len(picked) - limit, 0), None)))

    # -- klines --------------------------------------------------------------------------------

    def _bars_1m(self, h: SymbolHistory, start: int, end: int, now: int) -> Bars:
        """1m bars opening in ``[start, end)``; the minute holding ``now`` only up to ``now``."""
        end = min(end, now + 1)
        if end <= start:
            return Bars.empty()
        whole_end = min(end, now - now % MINUTE_MS)  # minutes that have fully happened
        parts: list[Bars] = []
        if whole_end > start:
            for chunk in range(start // CHUNK_MS, (whole_end - 1) // CHUNK_MS + 1):
                bars = h.chunk_bars(chunk)
                lo, hi = np.searchsorted(bars.open_time, [start, whole_end], side="left")
                parts.append(bars.take(slice(lo, hi)))
        if end > whole_end:
            t = self.trades_between(h.symbol.spec.symbol_id, max(start, whole_end), end)
            t_cut = t.ts <= now
            parts.append(
                bars_from_trades(
                    t.ts[t_cut] - t.ts[t_cut] % MINUTE_MS,
                    t.ids[t_cut],
                    t.price[t_cut],
                    t.qty[t_cut],
                    t.buyer_maker[t_cut],
                )
            )
        return Bars.concat(parts)

    def klines(
        self,
        symbol_id: str,
        interval: str,
        start: int | None,
        end: int | None,
        limit: int,
        now: int,
    ) -> list[KlineRow]:
        h = self.history(symbol_id)
        first = interval_open(h.history_start, interval)
        last = interval_open(min(now, end) if end is not None else now, interval)
        if start is not None:
            first = max(first, interval_open(start, interval))
            if first < start:
                first = next_open(first, interval)
            opens = _opens(first, last, interval, limit, from_start=True)
        else:
            opens = _opens(first, last, interval, limit, from_start=False)
        if not opens:
            return []
        span_end = next_open(opens[-1], interval)
        if interval == "1m" and span_end <= now - now % MINUTE_MS:
            return self._closed_1m_rows(h, opens[0], span_end)
        if interval == "1s":
            t = self.trades_between(symbol_id, opens[0], min(span_end, now + 1))
            bars = bars_from_trades(t.ts - t.ts % 1000, t.ids, t.price, t.qty, t.buyer_maker)
        else:
            minute_bars = self._bars_1m(h, opens[0], span_end, now)
            bars = rollup(minute_bars, _group_opens(minute_bars.open_time, interval))
        current = interval_open(now, interval)
        if opens[-1] == current and (len(bars) == 0 or int(bars.open_time[-1]) != current):
            bars = Bars.concat([bars, self._quiet_bar(h, current)])
        close_times = [next_open(o, interval) - 1 for o in bars.open_time.tolist()]
        spec = h.symbol.spec
        return to_kline_rows(bars, close_times, spec.price_decimals, spec.qty_decimals)

    def _closed_1m_rows(self, h: SymbolHistory, start: int, end: int) -> list[KlineRow]:
        """Wire rows of closed minutes in ``[start, end)``, formatted once per chunk: closed
        history never changes, and formatting was ~90 % of a 1000-row klines answer."""
        spec = h.symbol.spec
        out: list[KlineRow] = []
        for chunk in range(start // CHUNK_MS, (end - 1) // CHUNK_MS + 1):
            key = (spec.symbol_id, chunk)
            rows = self._closed_rows.get(key)
            if rows is None:
                bars = h.chunk_bars(chunk)
                close_times = [o + MINUTE_MS - 1 for o in bars.open_time.tolist()]
                rows = to_kline_rows(bars, close_times, spec.price_decimals, spec.qty_decimals)
                if len(self._closed_rows) >= CLOSED_ROW_CHUNKS:
                    self._closed_rows.pop(next(iter(self._closed_rows)))  # oldest first
                self._closed_rows[key] = rows
            opens = [r.open_time for r in rows] if rows else []
            lo, hi = bisect.bisect_left(opens, start), bisect.bisect_left(opens, end)
            out.extend(rows[lo:hi])
        return out

    def _quiet_bar(self, h: SymbolHistory, open_time: int) -> Bars:
        """The open bar before its first trade: Binance shows it at the last price, no volume."""
        chunk = (open_time - 1) // CHUNK_MS
        t = h.chunk_trades(chunk)
        i = int(np.searchsorted(t.ts, open_time)) - 1
        if i < 0:  # every minute trades, so the chunk before has a last trade
            t = h.chunk_trades(chunk - 1)
            i = len(t) - 1
        price = np.array([t.price[i] if i >= 0 else h.mid_ticks(open_time)], dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        none = np.full(1, -1, dtype=np.int64)
        return Bars(
            np.array([open_time], dtype=np.int64),
            price,
            price,
            price,
            price,
            zero,
            zero,
            zero,
            zero,
            zero,
            none,
            none,
        )

    # -- depth ---------------------------------------------------------------------------------

    def depth(self, symbol_id: str, limit: int, now: int) -> DepthSnapshot:
        return self.book(symbol_id, now).snapshot(limit)

    # -- streams -------------------------------------------------------------------------------

    def start_stream(self, symbol_id: str, now: int) -> None:
        self.history(symbol_id)
        self._trade_cursor.pop(symbol_id, None)
        for key in [k for k in self._kline_cursor if k[0] == symbol_id]:
            del self._kline_cursor[key]

    def stop_stream(self, symbol_id: str) -> None:
        self._trade_cursor.pop(symbol_id, None)
        book = self._books.get(symbol_id)
        if book is not None:
            book.pending = None

    def prefetch_due(self, symbol_id: str, now: int) -> int | None:
        """The chunk after ``now``'s, when it is not generated yet (see ``prefetch``)."""
        chunk = now // CHUNK_MS + 1
        return None if self.history(symbol_id).has_chunk(chunk) else chunk

    def prefetch(self, symbol_id: str, chunk: int) -> None:
        """Generate ``chunk`` of ``symbol_id`` ahead of the publisher (a worker thread)."""
        self.history(symbol_id).prefetch(chunk)

    def drain_trades(self, symbol_id: str, now: int) -> TradeBatch:
        cursor = self._trade_cursor.get(symbol_id)
        if cursor is None or now <= cursor:
            self._trade_cursor[symbol_id] = max(now, cursor or now)
            return TradeBatch(symbol_id)
        self._trade_cursor[symbol_id] = now
        return self._batch(symbol_id, self.trades_between(symbol_id, cursor + 1, now + 1), False)

    def drain_depth(self, symbol_id: str, now: int) -> list[DepthDiff]:
        book = self.book(symbol_id, now)
        if book.pending is None:  # first drain: diffs start from here
            book.pending = []
            return []
        diffs, book.pending = book.pending, []
        return diffs

    def drain_klines(self, symbol_id: str, interval: str, now: int) -> list[tuple[KlineRow, bool]]:
        key = (symbol_id, interval)
        current = interval_open(now, interval)
        cursor = self._kline_cursor.get(key)
        out: list[tuple[KlineRow, bool]] = []
        if cursor is not None and current > cursor.open_time:
            closed = self.klines(symbol_id, interval, cursor.open_time, cursor.open_time, 1, now)
            out.extend((row, True) for row in closed)
        elif cursor is not None and now - cursor.pushed_at < KLINE_PUSH_MS:
            return out
        rows = self.klines(symbol_id, interval, current, current, 1, now)
        out.extend((row, False) for row in rows)
        self._kline_cursor[key] = _KlineCursor(current, now)
        return out


def _no_trades() -> TradeArrays:
    z = np.zeros(0, dtype=np.int64)
    return TradeArrays(z, z, z, z, np.zeros(0, dtype=bool))


def _take(t: TradeArrays, index: slice | np.ndarray) -> TradeArrays:
    return TradeArrays(
        t.ts[index], t.ids[index], t.price[index], t.qty[index], t.buyer_maker[index]
    )


def _concat(parts: list[TradeArrays]) -> TradeArrays:
    parts = [p for p in parts if len(p)]
    if not parts:
        return _no_trades()
    if len(parts) == 1:
        return parts[0]
    return TradeArrays(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("ts", "ids", "price", "qty", "buyer_maker")
        )
    )


def _opens(first: int, last: int, interval: str, limit: int, from_start: bool) -> list[int]:
    """Bar opens in ``[first, last]``: the first ``limit`` or, going back, the last ``limit``."""
    if last < first or limit <= 0:
        return []
    length = INTERVAL_MS.get(interval)
    if length is not None and interval != "1w":
        count = (last - first) // length + 1
        if from_start:
            return [first + i * length for i in range(min(count, limit))]
        return [last - i * length for i in range(min(count, limit))][::-1]
    opens: list[int] = []
    t = first
    while t <= last:
        opens.append(t)
        t = next_open(t, interval)
    return opens[:limit] if from_start else opens[-limit:]


def _group_opens(open_times: np.ndarray, interval: str) -> np.ndarray:
    """Open time of the ``interval`` bar holding each 1m open time."""
    if interval == "1M":
        months = open_times.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype("datetime64[ms]").astype(np.int64)
    if interval == "1w":
        offset = 4 * DAY_MS
        return open_times - (open_times - offset) % INTERVAL_MS["1w"]
    return open_times - open_times % INTERVAL_MS[interval]
