"""Replay of recorded market data as an emulator market source.

REST answers come from the whole recording (it is all in the past): klines, trades, and the
book as far as the replay has got. Streams replay a symbol's recorded trades, depth diffs and
candles from its first subscription on, at ``speed`` times the recorded pace, or, with
``speed=0``, as fast as the publisher drains them (``burst`` events per drain and stream).
Recorded timestamps are kept, so a client sees the original event times.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

from ats_pipelines.emulator.book import L2Book
from ats_pipelines.emulator.intervals import INTERVAL_MS, interval_open
from ats_pipelines.emulator.model import (
    DepthDiff,
    DepthSnapshot,
    KlineRow,
    SymbolSpec,
    TradeBatch,
    float_to_str,
)
from ats_pipelines.emulator.replay_data import ReplaySymbolData, load_testdata
from ats_pipelines.emulator.source import UnknownSymbol


def _slice(batch: TradeBatch, lo: int, hi: int) -> TradeBatch:
    return TradeBatch(
        batch.symbol_id,
        batch.ids[lo:hi],
        batch.ts[lo:hi],
        batch.prices[lo:hi],
        batch.qtys[lo:hi],
        batch.buyer_maker[lo:hi],
        batch.quotes[lo:hi] if batch.quotes else [],
    )


def rollup_rows(rows: list[KlineRow], interval: str) -> list[KlineRow]:
    """Aggregate recorded klines into a coarser fixed-length interval (float arithmetic)."""
    out: list[KlineRow] = []
    group: list[KlineRow] = []

    def flush() -> None:
        first, last = group[0], group[-1]
        ot = interval_open(first.open_time, interval)
        out.append(
            KlineRow(
                ot,
                first.open,
                float_to_str(max(float(r.high) for r in group)),
                float_to_str(min(float(r.low) for r in group)),
                last.close,
                float_to_str(math.fsum(float(r.volume) for r in group)),
                ot + INTERVAL_MS[interval] - 1,
                float_to_str(math.fsum(float(r.quote_volume) for r in group)),
                sum(r.trades for r in group),
                float_to_str(math.fsum(float(r.taker_buy_base) for r in group)),
                float_to_str(math.fsum(float(r.taker_buy_quote) for r in group)),
            )
        )

    for row in rows:
        if group and interval_open(row.open_time, interval) != interval_open(
            group[0].open_time, interval
        ):
            flush()
            group = []
        group.append(row)
    if group:
        flush()
    return out


@dataclass
class _Stream:
    """Replay position of one symbol: where its clock started and how far each stream got."""

    origin: int  # recorded time the replay starts from
    started_at: int  # emulator time of the first subscription
    trade_pos: int = 0
    diff_pos: int = 0
    candle_pos: dict[str, int] | None = None
    pending: list[DepthDiff] | None = None


class ReplayMarket:
    """A :class:`~ats_pipelines.emulator.source.MarketSource` over recorded data."""

    def __init__(
        self, data: dict[str, ReplaySymbolData], speed: float = 1.0, burst: int = 200
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay speed {speed} must be >= 0 (0 = as fast as possible)")
        self.data = data
        self.speed = speed
        self.burst = burst
        self._books: dict[str, L2Book[float, str]] = {}
        self._streams: dict[str, _Stream] = {}
        for symbol_id, entry in data.items():
            book: L2Book[float, str] = L2Book()
            if entry.snapshot is not None:
                for p, q in entry.snapshot.bids:
                    book.bids[float(p)] = q
                for p, q in entry.snapshot.asks:
                    book.asks[float(p)] = q
                book.last_update_id = entry.snapshot.last_update_id
            self._books[symbol_id] = book

    @classmethod
    def from_testdata(cls, root: Path, speed: float = 1.0) -> ReplayMarket:
        return cls(load_testdata(root), speed)

    def _entry(self, symbol_id: str) -> ReplaySymbolData:
        try:
            return self.data[symbol_id]
        except KeyError:
            raise UnknownSymbol(symbol_id) from None

    def specs(self) -> list[SymbolSpec]:
        return [e.spec for e in self.data.values()]

    # -- REST ----------------------------------------------------------------------------------

    def candle_rows(self, symbol_id: str, interval: str) -> list[KlineRow]:
        """The recorded klines of ``interval``, or a roll-up of a finer recorded interval."""
        entry = self._entry(symbol_id)
        if interval in entry.candles:
            return entry.candles[interval]
        length = INTERVAL_MS.get(interval)
        if length is None or interval == "1w":
            return []
        finer = [
            i
            for i in entry.candles
            if INTERVAL_MS.get(i, length) < length and length % INTERVAL_MS[i] == 0
        ]
        if not finer:
            return []
        best = min(finer, key=lambda i: INTERVAL_MS[i])
        rolled = rollup_rows(entry.candles[best], interval)
        entry.candles[interval] = rolled
        return rolled

    def klines(
        self,
        symbol_id: str,
        interval: str,
        start: int | None,
        end: int | None,
        limit: int,
        now: int,
    ) -> list[KlineRow]:
        rows = self.candle_rows(symbol_id, interval)
        opens = [r.open_time for r in rows]
        lo = bisect.bisect_left(opens, start) if start is not None else 0
        hi = bisect.bisect_right(opens, min(end, now) if end is not None else now)
        if start is None:
            lo = max(lo, hi - limit)
        return rows[lo : min(hi, lo + limit)]

    def trades(
        self,
        symbol_id: str,
        now: int,
        limit: int,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> TradeBatch:
        batch = self._entry(symbol_id).trades
        if batch is None:
            return TradeBatch(symbol_id)
        if from_id is not None:
            lo = bisect.bisect_left(batch.ids, from_id)
            return _slice(batch, lo, lo + limit)
        if start is not None:
            lo = bisect.bisect_left(batch.ts, start)
            hi = bisect.bisect_right(batch.ts, end if end is not None else now)
            return _slice(batch, lo, min(hi, lo + limit))
        hi = bisect.bisect_right(batch.ts, now)
        return _slice(batch, max(hi - limit, 0), hi)

    def depth(self, symbol_id: str, limit: int, now: int) -> DepthSnapshot:
        self._advance_book(symbol_id, now)
        book = self._books[symbol_id]
        return DepthSnapshot(
            book.last_update_id,
            [(float_to_str(p), q) for p, q in book.levels("bid", limit)],
            [(float_to_str(p), q) for p, q in book.levels("ask", limit)],
        )

    def book(self, symbol_id: str) -> L2Book[float, str]:
        """The true replayed book (the order-book oracle), as far as the replay has got."""
        self._entry(symbol_id)
        return self._books[symbol_id]

    # -- streams -------------------------------------------------------------------------------

    def _origin(self, entry: ReplaySymbolData) -> int:
        firsts = [entry.diffs[0].event_time] if entry.diffs else []
        if entry.trades is not None and entry.trades.ts:
            firsts.append(entry.trades.ts[0])
        firsts.extend(rows[0].close_time for rows in entry.candles.values() if rows)
        return min(firsts, default=0)

    def start_stream(self, symbol_id: str, now: int) -> None:
        entry = self._entry(symbol_id)
        if symbol_id not in self._streams:  # the replay clock starts once, at first interest
            self._streams[symbol_id] = _Stream(self._origin(entry), now, candle_pos={})

    def stop_stream(self, symbol_id: str) -> None:
        stream = self._streams.get(symbol_id)
        if stream is not None:
            stream.pending = None

    def replay_time(self, symbol_id: str, now: int) -> float:
        """How far into the recording the replay of ``symbol_id`` is at emulator time ``now``."""
        stream = self._streams.get(symbol_id)
        if stream is None:
            return -math.inf
        if self.speed == 0:
            return math.inf
        return stream.origin + (now - stream.started_at) * self.speed

    def finished(self, symbol_id: str) -> bool:
        """True once every recorded trade and diff of the symbol has been replayed."""
        entry, stream = self._entry(symbol_id), self._streams.get(symbol_id)
        if stream is None:
            return False
        trades = len(entry.trades.ids) if entry.trades is not None else 0
        return stream.trade_pos >= trades and stream.diff_pos >= len(entry.diffs)

    def _advance_book(self, symbol_id: str, now: int) -> None:
        entry = self._entry(symbol_id)
        stream = self._streams.get(symbol_id)
        if stream is None:
            return
        until = self.replay_time(symbol_id, now)
        book = self._books[symbol_id]
        stop = (
            min(len(entry.diffs), stream.diff_pos + self.burst)
            if self.speed == 0
            else len(entry.diffs)
        )
        while stream.diff_pos < stop and entry.diffs[stream.diff_pos].event_time <= until:
            diff = entry.diffs[stream.diff_pos]
            for p, q in diff.bids:
                book.set("bid", float(p), q if float(q) else None)
            for p, q in diff.asks:
                book.set("ask", float(p), q if float(q) else None)
            book.last_update_id = diff.last_id
            if stream.pending is not None:
                stream.pending.append(diff)
            stream.diff_pos += 1

    def drain_trades(self, symbol_id: str, now: int) -> TradeBatch:
        entry, stream = self._entry(symbol_id), self._streams.get(symbol_id)
        if stream is None or entry.trades is None:
            return TradeBatch(symbol_id)
        batch = entry.trades
        if self.speed == 0:
            hi = min(stream.trade_pos + self.burst, len(batch.ids))
        else:
            hi = bisect.bisect_right(batch.ts, self.replay_time(symbol_id, now))
        lo, stream.trade_pos = stream.trade_pos, max(hi, stream.trade_pos)
        return _slice(batch, lo, stream.trade_pos)

    def drain_depth(self, symbol_id: str, now: int) -> list[DepthDiff]:
        stream = self._streams.get(symbol_id)
        if stream is None:
            return []
        if stream.pending is None:
            stream.pending = []
        self._advance_book(symbol_id, now)
        diffs, stream.pending = stream.pending, []
        return diffs

    def drain_klines(self, symbol_id: str, interval: str, now: int) -> list[tuple[KlineRow, bool]]:
        stream = self._streams.get(symbol_id)
        if stream is None or stream.candle_pos is None:
            return []
        rows = self.candle_rows(symbol_id, interval)
        until = self.replay_time(symbol_id, now)
        lo = stream.candle_pos.get(interval, 0)
        hi = lo
        limit = len(rows) if self.speed else min(len(rows), lo + self.burst)
        while hi < limit and rows[hi].close_time <= until:
            hi += 1
        stream.candle_pos[interval] = hi
        return [(row, True) for row in rows[lo:hi]]
