"""ccxt timeframe strings (``1m``, ``4h``, ``1M`` …) and clock alignment of timestamps.

Timestamps are epoch milliseconds (UTC), the unit ccxt and the exchanges use. Buckets are
aligned the way Binance aligns its klines, so our bars and the exchange's agree:

* ``Ns Nm Nh Nd`` — fixed durations aligned to the Unix epoch (``3d`` buckets start on
  1970-01-01 + k·3 days, as Binance's do);
* ``Nw`` — weeks start on Monday 00:00 UTC (the epoch was a Thursday, hence the offset);
* ``NM`` — calendar months, aligned to January 1970 (``1M`` is every month's first day).

freqtrade spells the month ``1Mo`` in file names; ``parse_timeframe`` accepts that spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import polars as pl

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# 1970-01-05 was the first Monday after the epoch: weekly buckets are offset by it.
_WEEK_OFFSET_MS = 4 * DAY_MS

DEFAULT_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")

_UNIT_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}
_PATTERN = re.compile(r"^([1-9][0-9]*)(s|m|h|d|w|M|Mo)$")
# Time is 64-bit microseconds in polars, Arrow and PostgreSQL: a longer "timeframe" cannot bucket
# any timestamp, and arithmetic with it overflows (a file named ...-99999999999999999999999m
# died with OverflowError at load), so parsing refuses it.
MAX_TIMEFRAME_MS = (2**63 - 1) // 1000


class TimeframeError(ValueError):
    """A timeframe string or an alignment request that cannot be honoured; names the value."""


@dataclass(frozen=True, slots=True)
class Timeframe:
    """One parsed timeframe. ``ms`` is the fixed length, or ``None`` for calendar months."""

    value: str
    count: int
    unit: str
    ms: int | None
    offset_ms: int = 0

    @property
    def is_calendar(self) -> bool:
        return self.ms is None

    @property
    def nominal_ms(self) -> int:
        """Length in ms; a month counts as 30 days (ccxt's convention), for sizing only."""
        return self.ms if self.ms is not None else self.count * 30 * DAY_MS

    def __str__(self) -> str:
        return self.value


@lru_cache(maxsize=256)
def _parse(value: str) -> Timeframe:
    match = _PATTERN.match(value)
    if match is None:
        raise TimeframeError(
            f"invalid timeframe {value!r}: expected <count><unit> with unit one of "
            "s, m, h, d, w, M (e.g. '1m', '4h', '1M')"
        )
    count, unit = int(match.group(1)), match.group(2)
    length = count * (30 * DAY_MS if unit in ("M", "Mo") else _UNIT_MS[unit])
    if length > MAX_TIMEFRAME_MS:
        raise TimeframeError(
            f"invalid timeframe {value!r}: longer than 64-bit microsecond time can represent"
        )
    if unit in ("M", "Mo"):
        return Timeframe(f"{count}M", count, "M", None)
    offset = _WEEK_OFFSET_MS if unit == "w" else 0
    return Timeframe(value, count, unit, count * _UNIT_MS[unit], offset)


def parse_timeframe(value: str | Timeframe) -> Timeframe:
    """Parse a ccxt timeframe; raises ``TimeframeError`` naming the bad value."""
    if isinstance(value, Timeframe):
        return value
    if not isinstance(value, str):
        raise TimeframeError(f"invalid timeframe {value!r}: expected a string such as '1m'")
    return _parse(value)


def timeframe_ms(value: str | Timeframe) -> int:
    """Fixed length in ms; calendar months have none and raise ``TimeframeError``."""
    tf = parse_timeframe(value)
    if tf.ms is None:
        raise TimeframeError(f"timeframe {tf.value!r} is a calendar month: it has no fixed length")
    return tf.ms


def to_timedelta(value: str | Timeframe) -> timedelta:
    return timedelta(milliseconds=timeframe_ms(value))


def from_duration(duration: int | timedelta) -> str:
    """Canonical timeframe for a length (ms or timedelta): the largest unit dividing it."""
    ms = duration if isinstance(duration, int) else round(duration.total_seconds() * 1000)
    if ms <= 0 or ms % SECOND_MS:
        raise TimeframeError(f"duration {duration!r} is not a positive whole number of seconds")
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    raise AssertionError("unreachable: every whole second divides by 's'")


def sort_timeframes(values: list[str] | tuple[str, ...]) -> list[str]:
    """Shortest first; duplicates (also ``1Mo`` vs ``1M``) removed."""
    parsed = {parse_timeframe(v).value: parse_timeframe(v) for v in values}
    return sorted(parsed, key=lambda v: parsed[v].nominal_ms)


def divides(lower: str | Timeframe, higher: str | Timeframe) -> bool:
    """True when every ``higher`` bucket is a union of whole ``lower`` buckets (rollups)."""
    lo, hi = parse_timeframe(lower), parse_timeframe(higher)
    if hi.is_calendar:
        if lo.is_calendar:
            return hi.count % lo.count == 0
        # months start at midnight; any fixed unit dividing a day tiles them
        return lo.ms is not None and DAY_MS % lo.ms == 0
    if lo.is_calendar or lo.ms is None or hi.ms is None:
        return False
    return hi.ms % lo.ms == 0 and (hi.offset_ms - lo.offset_ms) % lo.ms == 0


# --- scalar alignment ---------------------------------------------------------------------


def _month_index(ts_ms: int) -> int:
    dt = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return (dt.year - 1970) * 12 + dt.month - 1


def _month_start_ms(index: int) -> int:
    year, month0 = divmod(index, 12)
    return int(datetime(1970 + year, month0 + 1, 1, tzinfo=UTC).timestamp() * 1000)


def floor_ms(ts_ms: int, value: str | Timeframe) -> int:
    """Open time of the bucket holding ``ts_ms``."""
    tf = parse_timeframe(value)
    if tf.ms is None:
        index = _month_index(ts_ms)
        return _month_start_ms(index - index % tf.count)
    return ts_ms - (ts_ms - tf.offset_ms) % tf.ms


def bucket_end_ms(ts_ms: int, value: str | Timeframe) -> int:
    """Exclusive end of the bucket holding ``ts_ms`` (= the next bucket's open time)."""
    tf = parse_timeframe(value)
    start = floor_ms(ts_ms, tf)
    if tf.ms is None:
        return _month_start_ms(_month_index(start) + tf.count)
    return start + tf.ms


def is_aligned(ts_ms: int, value: str | Timeframe) -> bool:
    return floor_ms(ts_ms, value) == ts_ms


def floor_datetime(ts: datetime, value: str | Timeframe) -> datetime:
    """Bucket open time of an aware datetime, in UTC; naive datetimes are refused."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise TimeframeError(f"timestamp {ts.isoformat()} has no time zone; expected UTC")
    ms = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return datetime.fromtimestamp(floor_ms(ms, value) / 1000, UTC)


# --- vectorised alignment -----------------------------------------------------------------


def floor_array(ts_ms: np.ndarray, value: str | Timeframe) -> np.ndarray:
    """``floor_ms`` over an int64 array of epoch ms."""
    tf = parse_timeframe(value)
    ts = np.asarray(ts_ms, dtype=np.int64)
    if tf.ms is None:
        # datetime64 casts to month units floor toward -inf, like our scalar path
        months = ts.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
        months = months - months % tf.count
        return months.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    return ts - (ts - tf.offset_ms) % tf.ms


def is_aligned_array(ts_ms: np.ndarray, value: str | Timeframe) -> np.ndarray:
    ts = np.asarray(ts_ms, dtype=np.int64)
    return floor_array(ts, value) == ts


def floor_expr(expr: pl.Expr, value: str | Timeframe) -> pl.Expr:
    """``floor_ms`` as a polars expression over an Int64 epoch-ms column."""
    tf = parse_timeframe(value)
    if tf.ms is None:
        as_dt = pl.from_epoch(expr, time_unit="ms")
        truncated = as_dt.dt.truncate(f"{tf.count}mo")
        return truncated.dt.epoch("ms")
    return expr - (expr - tf.offset_ms) % tf.ms


def is_aligned_expr(expr: pl.Expr, value: str | Timeframe) -> pl.Expr:
    return floor_expr(expr, value) == expr


def epoch_ms_expr(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Epoch ms of a column that is either Int64 epoch ms or a Datetime (any unit)."""
    if isinstance(dtype, pl.Datetime):
        return expr.dt.epoch("ms")
    return expr.cast(pl.Int64)
