"""Trade-to-bar aggregation, live (one trade at a time) and in batch, with identical results.

Bars are bucketed by **exchange trade time**, aligned to the clock (``lib.timeframes``); ``ts``
is the bucket's open time. Only the smallest configured timeframe (the *base*, e.g. ``1m``) is
built from trades; every higher timeframe is the rollup of closed base bars. So a ``1h`` bar is
by construction the rollup of its ``1m`` bars, live and in batch alike.

Exactness. Floating-point sums depend on order, and live trades may arrive shuffled within the
grace period. Every sum (volume, quote volume, taker-buy volume, and their rollups) is therefore
``math.fsum`` — the correctly rounded sum of the exact values — which does not depend on order.
Open/close/first/last follow the canonical trade order ``(timestamp, trade id)`` where ids
compare as ``(len, str)`` (numeric order for exchange integer ids). Live and batch bars are then
equal field for field, bit for bit.

Closing. A base bucket ``[b, b+d)`` is final once the watermark — the latest exchange time seen
from trades, or the clock passed to ``advance`` — reaches ``b + d + grace``. Trades of a final
bucket are *late*: not applied, collected with a reason for quarantine. With ``grace_ms=0`` a
bar closes on the first trade of a later bucket. Empty buckets yield no bar.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from math import fsum, inf
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from ats_pipelines.lib.tables import CANDLES
from ats_pipelines.lib.timeframes import (
    DEFAULT_TIMEFRAMES,
    TimeframeError,
    bucket_end_ms,
    divides,
    floor_array,
    floor_ms,
    parse_timeframe,
    sort_timeframes,
)

APPLIED, DUPLICATE, LATE = 0, 1, 2
LATE_RULE = "bars.late_trade"
_FAR_PAST = -(2**62)

# the stored candle columns (lib/tables.py), with ts in epoch-ms precision and trade-id bounds
BAR_SCHEMA: dict[str, Any] = {
    **CANDLES.polars_schema(("exchange", "symbol", "timeframe")),
    "ts": pl.Datetime("ms", "UTC"),
    **CANDLES.polars_schema(CANDLES.values),
    "first_trade_id": pl.String,
    "last_trade_id": pl.String,
}


class Bar(NamedTuple):
    """One OHLCV bar; ``ts`` is the open time in epoch ms (UTC)."""

    exchange: str
    symbol: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trade_count: int
    vwap: float
    taker_buy_volume: float
    first_trade_id: str | None
    last_trade_id: str | None

    @property
    def open_time(self) -> datetime:
        return datetime.fromtimestamp(self.ts / 1000, UTC)


class LateTrade(NamedTuple):
    """A trade refused because its bucket was already final; ``reason`` names it for people."""

    ts: int
    price: float
    amount: float
    side: str | None
    trade_id: str
    bucket: int
    rule: str
    reason: str


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _idkey(trade_id: Any) -> tuple[int, str]:
    # (len, str): integer ids without leading zeros sort numerically, other ids stay total.
    s = trade_id if type(trade_id) is str else str(trade_id)
    return (len(s), s)


def _vwap(quote: float, volume: float, close: float, low: float, high: float) -> float:
    # price*amount rounding can put a one-price bar's vwap an ulp outside [low, high]: clamp
    return min(max(quote / volume, low), high) if volume > 0 else close


def exact_parts(values: Iterable[float]) -> list[float]:
    """A short list of floats whose exact sum equals the exact sum of ``values``.

    Carried in saved state so a resumed bar's fsum equals an uninterrupted one bit for bit.
    """
    rest = list(values)
    parts: list[float] = []
    while (s := fsum(rest)) != 0.0:  # fsum is 0.0 only when the exact sum is 0
        parts.append(s)
        rest.append(-s)
    return parts


class _Acc:
    """An open bucket. Base buckets accumulate trades; higher ones accumulate base bars."""

    __slots__ = (
        "buys",
        "close",
        "count",
        "end",
        "first_id",
        "first_ts",
        "high",
        "id_floor",
        "ids",
        "last_id",
        "last_ts",
        "low",
        "open",
        "quotes",
        "start",
        "vols",
    )

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.open = self.close = 0.0
        self.high, self.low = -inf, inf
        self.first_ts, self.last_ts = -_FAR_PAST, _FAR_PAST
        self.first_id: str | None = None
        self.last_id: str | None = None
        self.count = 0
        self.vols: list[float] = []
        self.quotes: list[float] = []
        self.buys: list[float] = []
        self.ids: set[str] = set()
        self.id_floor: tuple[int, str] | None = None

    def fold(self, bar: Bar) -> None:
        """Add a closed lower bar (they arrive in time order)."""
        if self.high == -inf:
            self.open, self.first_id = bar.open, bar.first_trade_id
        self.high = max(self.high, bar.high)
        self.low = min(self.low, bar.low)
        self.close, self.last_id = bar.close, bar.last_trade_id
        self.count += bar.trade_count
        self.vols.append(bar.volume)
        self.quotes.append(bar.quote_volume)
        self.buys.append(bar.taker_buy_volume)

    def bar(self, exchange: str, symbol: str, timeframe: str) -> Bar:
        volume, quote = fsum(self.vols), fsum(self.quotes)
        return Bar(
            exchange,
            symbol,
            timeframe,
            self.start,
            self.open,
            self.high,
            self.low,
            self.close,
            volume,
            quote,
            self.count,
            _vwap(quote, volume, self.close, self.low, self.high),
            fsum(self.buys),
            self.first_id,
            self.last_id,
        )


@dataclass
class OpenBucketState:
    """Saved form of an open bucket: exact sum parts, and seen ids for base buckets."""

    timeframe: str
    start: int
    open: float
    high: float
    low: float
    close: float
    trade_count: int
    first_ts: int
    last_ts: int
    first_trade_id: str | None
    last_trade_id: str | None
    volume_parts: list[float]
    quote_parts: list[float]
    buy_parts: list[float]
    seen_ids: list[str] = field(default_factory=list)
    id_floor: str | None = None


@dataclass
class AggregatorState:
    """Everything needed to resume exactly: ``to_dict()`` is JSON-serialisable."""

    exchange: str
    symbol: str
    timeframes: list[str]
    grace_ms: int
    dedup_window_ms: int
    watermark: int
    closed_before: int
    open: list[OpenBucketState]
    recent_ids: list[tuple[int, list[str]]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AggregatorState:
        fields = dict(data)
        fields["open"] = [OpenBucketState(**o) for o in data["open"]]
        fields["recent_ids"] = [(int(b), list(ids)) for b, ids in data["recent_ids"]]
        return cls(**fields)


class BarAggregator:
    """Live multi-timeframe bars for one (exchange, symbol).

    The streaming service, per symbol:

    * ``on_trade(ts, price, amount, side, id)`` for every validated trade (exchange time in ms;
      a bogus future timestamp would finalise bars early, so validate first);
    * ``advance(now_ms)`` on a timer (e.g. every 250 ms) so quiet markets still close bars;
      pass a clock comparable with exchange time (subtract a known skew);
    * ``drain()`` after each batch of trades and the bars ``advance`` returns: final bars to
      write; ``drain_late()``: refused trades, with a reason, for ``ops.quarantine``;
    * ``state()`` to persist (JSON via ``to_dict``) and ``from_state`` on restart; or
      ``resume(bars, seen_ids=…)`` from what the candles table holds;
    * ``open_bars()`` for the hot cache (provisional, nothing is finalised).
    """

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
        *,
        grace_ms: int = 2_000,
        dedup_window_ms: int | None = None,
    ) -> None:
        tfs = sort_timeframes(list(timeframes))
        if not tfs:
            raise TimeframeError("at least one timeframe is required")
        base = parse_timeframe(tfs[0])
        if base.ms is None:
            raise TimeframeError(f"base timeframe {base.value!r} must have a fixed length")
        for tf in tfs[1:]:
            if not divides(base, tf):
                raise TimeframeError(f"timeframe {tf!r} is not a whole number of {base.value!r}")
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.exchange, self.symbol = exchange, symbol
        self.timeframes: tuple[str, ...] = tuple(tfs)
        self.base: str = base.value
        self.grace_ms = grace_ms
        # ids of final buckets are kept this long so replays read as duplicates, not late
        self.dedup_window_ms = max(dedup_window_ms or 15 * 60_000, base.ms + grace_ms)
        self._base_ms: int = base.ms
        self._higher = tfs[1:]
        self._open: dict[int, _Acc] = {}
        self._up: dict[str, _Acc | None] = dict.fromkeys(self._higher)
        self._recent: deque[tuple[int, set[str]]] = deque()
        self._cur_b = _FAR_PAST
        self._cur: _Acc | None = None
        self._wm = _FAR_PAST
        self._closed_before = _FAR_PAST
        self._next_check = _FAR_PAST
        self._hold: int | None = None  # no bucket from this one on is finalised
        self._out: list[Bar] = []
        self._late: list[LateTrade] = []
        self._refusal = LATE
        self.applied = self.duplicates = self.late = 0

    # --- the hot path ----------------------------------------------------------------------

    def on_trade(
        self, ts: int, price: float, amount: float, side: str | None, trade_id: str
    ) -> int:
        """Apply one trade (exchange time ``ts`` in ms); returns APPLIED, DUPLICATE or LATE."""
        b = ts - ts % self._base_ms
        acc = self._cur if b == self._cur_b else self._bucket(b, ts, price, amount, side, trade_id)
        if acc is None:
            return self._refusal
        ids = acc.ids
        if trade_id in ids or (acc.id_floor is not None and _idkey(trade_id) <= acc.id_floor):
            self.duplicates += 1
            return DUPLICATE
        ids.add(trade_id)
        if price > acc.high:
            acc.high = price
        if price < acc.low:
            acc.low = price
        if ts > acc.last_ts:
            acc.close, acc.last_ts, acc.last_id = price, ts, trade_id
            if acc.count == 0:
                acc.open, acc.first_ts, acc.first_id = price, ts, trade_id
        else:
            self._reorder(acc, ts, price, trade_id)
        acc.vols.append(amount)
        acc.quotes.append(price * amount)
        if side == "buy":
            acc.buys.append(amount)
        acc.count += 1
        self.applied += 1
        if ts > self._wm:
            self._wm = ts
            if ts >= self._next_check:
                self._advance()
        return APPLIED

    def on_trades(self, trades: Iterable[tuple[int, float, float, str | None, str]]) -> None:
        """``on_trade`` for each ``(ts, price, amount, side, id)``."""
        on_trade = self.on_trade
        for ts, price, amount, side, trade_id in trades:
            on_trade(ts, price, amount, side, trade_id)

    @staticmethod
    def _reorder(acc: _Acc, ts: int, price: float, trade_id: str) -> None:
        # an out-of-order or same-millisecond trade: place it by (ts, id)
        key = _idkey(trade_id)
        if ts == acc.last_ts and key > _idkey(acc.last_id):
            acc.close, acc.last_id = price, trade_id
        if ts < acc.first_ts or (ts == acc.first_ts and key < _idkey(acc.first_id)):
            acc.open, acc.first_ts, acc.first_id = price, ts, trade_id

    def _bucket(
        self, b: int, ts: int, price: float, amount: float, side: str | None, trade_id: str
    ) -> _Acc | None:
        acc = self._open.get(b)
        if acc is None:
            if b < self._closed_before:
                self._refuse(b, ts, price, amount, side, trade_id)
                return None
            acc = self._open[b] = _Acc(b, b + self._base_ms)
        if b >= self._cur_b:
            self._cur_b, self._cur = b, acc
        return acc

    def _refuse(
        self, b: int, ts: int, price: float, amount: float, side: str | None, trade_id: str
    ) -> None:
        for bucket, ids in self._recent:
            if bucket == b and trade_id in ids:
                self.duplicates += 1
                self._refusal = DUPLICATE
                return
        self.late += 1
        self._refusal = LATE
        final_at = b + self._base_ms + self.grace_ms
        reason = (
            f"late trade {trade_id} at {_iso(ts)} for the {self.base} bar of {_iso(b)}: "
            f"that bar became final at {_iso(final_at)} (grace {self.grace_ms} ms); "
            f"watermark is {_iso(self._wm)}"
        )
        self._late.append(LateTrade(ts, price, amount, side, trade_id, b, LATE_RULE, reason))

    # --- closing ---------------------------------------------------------------------------

    def advance(self, now_ms: int) -> list[Bar]:
        """Clock tick (ms, exchange-comparable): finalise what the grace allows, return bars."""
        if now_ms > self._wm:
            self._wm = now_ms
            if now_ms >= self._next_check:
                self._advance()
        return self.drain()

    on_clock = advance

    def hold(self, ts: int | None) -> None:
        """Finalise no bucket from the one holding ``ts`` on, whatever the watermark (trades
        known to be missing there are on their way); ``None`` releases the hold and finalises
        what the watermark allows."""
        before = self._hold
        self._hold = None if ts is None else ts - ts % self._base_ms
        if before is not None and (self._hold is None or self._hold > before):
            self._advance()

    @property
    def held_from(self) -> int | None:
        """The first bucket a :meth:`hold` keeps open, if any."""
        return self._hold

    def _advance(self) -> None:
        horizon = self._wm - self.grace_ms
        cb = horizon - horizon % self._base_ms
        if self._hold is not None and cb > self._hold:
            cb = self._hold
        if cb <= self._closed_before:
            return
        self._closed_before = cb
        self._next_check = cb + self._base_ms + self.grace_ms
        for b in sorted(k for k in self._open if k < cb):
            acc = self._open.pop(b)
            bar = acc.bar(self.exchange, self.symbol, self.base)
            self._out.append(bar)
            self._recent.append((b, acc.ids))
            for tf in self._higher:
                self._fold(tf, bar)
        for tf in self._higher:
            up = self._up[tf]
            if up is not None and up.end <= cb:
                self._out.append(up.bar(self.exchange, self.symbol, tf))
                self._up[tf] = None
        if self._cur_b < cb:
            self._cur_b, self._cur = _FAR_PAST, None
        while self._recent and self._recent[0][0] < cb - self.dedup_window_ms:
            self._recent.popleft()

    def _fold(self, tf: str, bar: Bar) -> None:
        up = self._up[tf]
        if up is not None and bar.ts >= up.end:
            self._out.append(up.bar(self.exchange, self.symbol, tf))
            up = None
        if up is None:
            start = floor_ms(bar.ts, tf)
            up = self._up[tf] = _Acc(start, _end(start, tf))
        up.fold(bar)

    def drain(self) -> list[Bar]:
        """Bars that became final since the last drain (base first, then higher ones)."""
        out, self._out = self._out, []
        return out

    def drain_late(self) -> list[LateTrade]:
        late, self._late = self._late, []
        return late

    def flush(self) -> list[Bar]:
        """Finalise every open bar regardless of grace (end of a replay, not a shutdown)."""
        last = max([*self._open, self._closed_before, self._wm])
        self._wm = max(self._wm, last + 2 * self._base_ms + self.grace_ms)
        self._advance()
        for tf in self._higher:
            up = self._up[tf]
            if up is not None:
                self._out.append(up.bar(self.exchange, self.symbol, tf))
                self._up[tf] = None
        return self.drain()

    @property
    def watermark(self) -> int:
        return self._wm

    def open_bars(self) -> list[Bar]:
        """Provisional bars of every open bucket (for a hot cache); nothing is finalised."""
        base = [
            self._open[b].bar(self.exchange, self.symbol, self.base) for b in sorted(self._open)
        ]
        bars = list(base)
        for tf in self._higher:
            up = self._up[tf]
            probes = {up.start: _copy(up)} if up is not None else {}
            for bar in base:
                start = floor_ms(bar.ts, tf)
                if start not in probes:
                    probes[start] = _Acc(start, _end(start, tf))
                probes[start].fold(bar)
            bars += [p.bar(self.exchange, self.symbol, tf) for _, p in sorted(probes.items())]
        return bars

    # --- state -----------------------------------------------------------------------------

    def state(self) -> AggregatorState:
        """Snapshot to persist; ``from_state`` resumes it exactly (sums bit for bit)."""
        open_states = [_save(self.base, a) for _, a in sorted(self._open.items())]
        open_states += [_save(tf, a) for tf, a in self._up.items() if a is not None]
        return AggregatorState(
            self.exchange,
            self.symbol,
            list(self.timeframes),
            self.grace_ms,
            self.dedup_window_ms,
            self._wm,
            self._closed_before,
            open_states,
            [(b, sorted(ids)) for b, ids in self._recent],
        )

    @classmethod
    def from_state(cls, state: AggregatorState) -> BarAggregator:
        agg = cls(
            state.exchange,
            state.symbol,
            state.timeframes,
            grace_ms=state.grace_ms,
            dedup_window_ms=state.dedup_window_ms,
        )
        agg._wm, agg._closed_before = state.watermark, state.closed_before
        agg._next_check = state.closed_before + agg._base_ms + agg.grace_ms
        agg._recent = deque((b, set(ids)) for b, ids in state.recent_ids)
        for s in state.open:
            acc = _load(s, agg._base_ms if s.timeframe == agg.base else None)
            if s.timeframe == agg.base:
                agg._open[acc.start] = acc
            else:
                agg._up[s.timeframe] = acc
        return agg

    def resume(
        self,
        base_bars: Sequence[Bar],
        *,
        seen_ids: Iterable[str] = (),
        last_trade_id: str | None = None,
    ) -> None:
        """Resume from base-timeframe bars loaded from the database.

        ``base_bars`` are the bars of the still-open higher buckets; the latest is the partial
        bar the service wrote before stopping and stays open. Trades of that bucket whose id
        is in ``seen_ids``, or not after ``last_trade_id`` (monotonic ids), are duplicates.
        A database row keeps only the rounded sums, so the resumed partial bar's volume sums
        can differ from an uninterrupted run by an ulp; ``from_state`` is exact.
        """
        if self._open or self.applied or any(self._up.values()):
            raise RuntimeError("resume() must be called before any trade is applied")
        if not base_bars:
            return
        ordered = sorted(base_bars, key=lambda bar: bar.ts)
        if any(bar.timeframe != self.base for bar in ordered):
            raise ValueError(f"resume() takes {self.base} bars only")
        *closed, partial = ordered
        for bar in closed:
            for tf in self._higher:
                self._fold(tf, bar)
        self._out.clear()  # bars completed before the stop were written then
        acc = _Acc(partial.ts, partial.ts + self._base_ms)
        acc.fold(partial)
        # the partial's first/last trade times are not stored: later trades of the bucket
        # move the close and never the open
        acc.first_ts = acc.last_ts = partial.ts - 1
        acc.ids = set(seen_ids)
        acc.id_floor = _idkey(last_trade_id) if last_trade_id is not None else None
        self._open[partial.ts] = acc
        self._cur_b, self._cur = partial.ts, acc
        self._closed_before = partial.ts
        self._next_check = partial.ts + self._base_ms + self.grace_ms
        self._wm = max(self._wm, partial.ts)


def _end(start: int, tf: str) -> int:
    ms = parse_timeframe(tf).ms
    return start + ms if ms is not None else bucket_end_ms(start, tf)


def _copy(acc: _Acc) -> _Acc:
    new = _Acc(acc.start, acc.end)
    for name in _Acc.__slots__:
        value = getattr(acc, name)
        setattr(new, name, list(value) if isinstance(value, list) else value)
    return new


def _save(tf: str, acc: _Acc) -> OpenBucketState:
    return OpenBucketState(
        tf,
        acc.start,
        acc.open,
        acc.high,
        acc.low,
        acc.close,
        acc.count,
        acc.first_ts,
        acc.last_ts,
        acc.first_id,
        acc.last_id,
        exact_parts(acc.vols),
        exact_parts(acc.quotes),
        exact_parts(acc.buys),
        sorted(acc.ids),
        acc.id_floor[1] if acc.id_floor else None,
    )


def _load(s: OpenBucketState, base_ms: int | None) -> _Acc:
    end = s.start + base_ms if base_ms is not None else _end(s.start, s.timeframe)
    acc = _Acc(s.start, end)
    acc.open, acc.high, acc.low, acc.close = s.open, s.high, s.low, s.close
    acc.count, acc.first_ts, acc.last_ts = s.trade_count, s.first_ts, s.last_ts
    acc.first_id, acc.last_id = s.first_trade_id, s.last_trade_id
    acc.vols, acc.quotes, acc.buys = list(s.volume_parts), list(s.quote_parts), list(s.buy_parts)
    acc.ids = set(s.seen_ids)
    acc.id_floor = _idkey(s.id_floor) if s.id_floor is not None else None
    return acc


# --- batch -----------------------------------------------------------------------------------

_INT_ID = r"^(0|[1-9][0-9]{0,17})$"  # fits Int64; numeric order == (len, str) order


@dataclass
class _Columns:
    """Bars of one timeframe as arrays (the batch path's working form)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    count: np.ndarray
    volume: list[float]
    quote: list[float | None]
    buy: list[float | None]
    first_id: pl.Series
    last_id: pl.Series


def _segments(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(buckets)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]]) if n else np.empty(0, int)
    return starts, np.r_[starts[1:], n].astype(np.int64)


def _group_fsum(values: list[float], starts: np.ndarray, ends: np.ndarray) -> list[float]:
    return [fsum(values[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _canonical_order(ts: np.ndarray, ids: pl.Series) -> tuple[np.ndarray | None, pl.Series]:
    """Row selection putting trades in (ts, id) order with repeated ids dropped; ids as str."""
    if ids.null_count() == len(ids):  # no ids: input order breaks ties, nothing to dedupe
        order = None if bool(np.all(np.diff(ts) >= 0)) else np.argsort(ts, kind="stable")
        return order, ids.cast(pl.String)
    key: np.ndarray | None = None
    if ids.dtype.is_integer() and (len(ids) == 0 or ids.min() >= 0):  # type: ignore[operator]
        key = ids.cast(pl.Int64).to_numpy()
    ids = ids.cast(pl.String)
    if key is None and ids.null_count() == 0 and ids.str.contains(_INT_ID).all():
        key = ids.cast(pl.Int64).to_numpy()
    if key is not None:
        d_ts, d_key = np.diff(ts), np.diff(key)
        order = (
            None
            if bool(np.all((d_ts > 0) | ((d_ts == 0) & (d_key > 0))))
            else np.lexsort((key, ts))
        )
        sorted_key = key if order is None else key[order]
        if bool(np.all(np.diff(sorted_key) > 0)):  # ids rise with time: all distinct
            return order, ids
        first = pl.Series(sorted_key).is_first_distinct().to_numpy()
    else:
        frame = pl.DataFrame({"ts": ts, "n": ids.str.len_chars(), "id": ids})
        order = frame.with_row_index("i").sort(["ts", "n", "id"])["i"].to_numpy()
        first = ids.gather(order).is_first_distinct().to_numpy()
    base = np.arange(len(ts)) if order is None else order
    return base[first], ids


def _base_columns(
    ts: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    buy: np.ndarray,
    ids: pl.Series,
    base: str,
) -> _Columns:
    starts, ends = _segments(floor_array(ts, base))
    last = ends - 1
    empty = len(starts) == 0
    quote = (price * amount).tolist()
    # taker buys only: the same exact sums as with zeros for sells, on half the values
    buy_at = np.flatnonzero(buy)
    buy_amounts = amount[buy_at]
    buy_starts, buy_ends = np.searchsorted(buy_at, starts), np.searchsorted(buy_at, ends)
    return _Columns(
        ts=floor_array(ts[starts], base),
        open=price[starts],
        close=price[last],
        high=price[:0] if empty else np.maximum.reduceat(price, starts),
        low=price[:0] if empty else np.minimum.reduceat(price, starts),
        count=(ends - starts).astype(np.int64),
        volume=_group_fsum(amount.tolist(), starts, ends),
        quote=list(_group_fsum(quote, starts, ends)),
        buy=list(_group_fsum(buy_amounts.tolist(), buy_starts, buy_ends)),
        first_id=ids.gather(starts),
        last_id=ids.gather(last),
    )


def _nullable_fsum(
    values: list[float | None], starts: np.ndarray, ends: np.ndarray
) -> list[float | None]:
    if None not in values:
        return list(_group_fsum(values, starts, ends))  # type: ignore[arg-type]
    return [
        None if None in values[a:b] else fsum(values[a:b])  # type: ignore[arg-type]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _rollup_columns(c: _Columns, timeframe: str) -> _Columns:
    starts, ends = _segments(floor_array(c.ts, timeframe))
    if len(starts) == 0:
        return c
    return _Columns(
        ts=floor_array(c.ts[starts], timeframe),
        open=c.open[starts],
        close=c.close[ends - 1],
        high=np.maximum.reduceat(c.high, starts),
        low=np.minimum.reduceat(c.low, starts),
        count=np.add.reduceat(c.count, starts),
        volume=_group_fsum(c.volume, starts, ends),
        quote=_nullable_fsum(c.quote, starts, ends),
        buy=_nullable_fsum(c.buy, starts, ends),
        first_id=c.first_id.gather(starts),
        last_id=c.last_id.gather(ends - 1),
    )


def _frame(c: _Columns, exchange: str, symbol: str, timeframe: str) -> pl.DataFrame:
    volume = np.asarray(c.volume, dtype=np.float64)
    quote = pl.Series("quote_volume", c.quote, dtype=pl.Float64)
    frame = pl.DataFrame(
        {
            "ts": pl.Series(c.ts, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": volume,
            "quote_volume": quote,
            "trade_count": c.count,
            "taker_buy_volume": pl.Series(c.buy, dtype=pl.Float64),
            "first_trade_id": c.first_id,
            "last_trade_id": c.last_id,
        }
    )
    vwap = (
        pl.when(pl.col("volume") > 0)
        .then((pl.col("quote_volume") / pl.col("volume")).clip(pl.col("low"), pl.col("high")))
        .otherwise(pl.col("close"))
    )
    return frame.with_columns(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(timeframe).alias("timeframe"),
        vwap.alias("vwap"),
    ).select([pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items()])


def aggregate_trades(
    trades: pl.DataFrame,
    timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
    *,
    exchange: str,
    symbol: str,
    ts_col: str = "timestamp",
    price_col: str = "price",
    amount_col: str = "amount",
    side_col: str = "side",
    id_col: str | None = "id",
) -> pl.DataFrame:
    """Bars of every timeframe from a frame of trades (ccxt column names by default).

    ``ts_col`` is Int64 epoch ms or a Datetime. Repeated trade ids count once. The result
    equals what ``BarAggregator`` emits for the same trades, field for field. Without ids
    (``id_col=None``) nothing is deduplicated, same-millisecond trades keep their input order
    and the trade-id columns are null.
    """
    tfs = BarAggregator(exchange, symbol, timeframes).timeframes  # validates the set
    ts_series = trades[ts_col]
    ts = (
        ts_series.dt.epoch("ms")
        if isinstance(ts_series.dtype, pl.Datetime)
        else ts_series.cast(pl.Int64)
    ).to_numpy()
    raw_ids = (
        trades[id_col]
        if id_col is not None
        else pl.repeat(None, trades.height, dtype=pl.String, eager=True)
    )
    select, ids = _canonical_order(ts, raw_ids)
    price = trades[price_col].cast(pl.Float64).to_numpy()
    amount = trades[amount_col].cast(pl.Float64).to_numpy()
    buy = (trades[side_col] == "buy").fill_null(False).to_numpy()
    if select is not None:
        ts, price, amount, buy = ts[select], price[select], amount[select], buy[select]
        ids = ids.gather(select)
    base = _base_columns(ts, price, amount, buy, ids, tfs[0])
    frames = [_frame(base, exchange, symbol, tfs[0])]
    frames += [_frame(_rollup_columns(base, tf), exchange, symbol, tf) for tf in tfs[1:]]
    return pl.concat(frames)


def rollup(bars: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Roll bars of one lower timeframe (per exchange and symbol) up to ``timeframe``.

    Nullable columns (quote volume, taker-buy volume, trade count, ids) are null in a rolled
    bar when any of its source bars lacks them.
    """
    if bars.is_empty():
        return pl.DataFrame(schema=BAR_SCHEMA)
    frames = []
    for (exchange, symbol, source), part in bars.sort("ts").group_by(
        ["exchange", "symbol", "timeframe"], maintain_order=True
    ):
        if not divides(str(source), timeframe):
            raise TimeframeError(f"cannot roll {source!r} bars up to {timeframe!r}")
        part = part.with_columns(
            [
                pl.lit(None, dtype).alias(name)
                for name, dtype in BAR_SCHEMA.items()
                if name not in part.columns
            ]
        )
        cols = _Columns(
            ts=part["ts"].dt.epoch("ms").to_numpy(),
            open=part["open"].to_numpy(),
            high=part["high"].to_numpy(),
            low=part["low"].to_numpy(),
            close=part["close"].to_numpy(),
            count=part["trade_count"].fill_null(0).cast(pl.Int64).to_numpy(),
            volume=part["volume"].to_list(),
            quote=part["quote_volume"].to_list(),
            buy=part["taker_buy_volume"].to_list(),
            first_id=part["first_trade_id"].cast(pl.String),
            last_id=part["last_trade_id"].cast(pl.String),
        )
        rolled = _frame(_rollup_columns(cols, timeframe), str(exchange), str(symbol), timeframe)
        if part["trade_count"].null_count():
            starts, _ = _segments(floor_array(cols.ts, timeframe))
            unknown = np.add.reduceat(part["trade_count"].is_null().to_numpy(), starts) > 0
            rolled = rolled.with_columns(
                pl.when(pl.Series(unknown))
                .then(None)
                .otherwise(pl.col("trade_count"))
                .alias("trade_count")
            )
        frames.append(rolled)
    return pl.concat(frames)


def bars_to_frame(bars: Iterable[Bar]) -> pl.DataFrame:
    """Live bars as a frame with the same schema as ``aggregate_trades``."""
    rows = [tuple(bar) for bar in bars]
    schema = {**BAR_SCHEMA, "ts": pl.Int64}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
