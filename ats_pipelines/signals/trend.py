"""The trend analyzer's rule: ``uptrendStart`` / ``downtrendStart`` from confirmed swing breaks.

The rule (swing-break "change of character"), evaluated on every closed bar ``t`` that has at
least ``lookback`` (``L``) bars before it, and on nothing but bars ``t-L .. t``:

1. **Swings.** Bar ``i`` is a *swing high* when its high is strictly above the highs of the
   ``swing`` (``k``) bars before it and at least the highs of the ``k`` bars after it (on a
   plateau of equal highs the first bar is the swing). A *swing low* mirrors this with lows.
   A swing is *confirmed* once its ``k`` later bars have closed, so at bar ``t`` only swings with
   ``i + k <= t - 1`` exist, and only those whose ``k`` earlier bars lie in the window
   (``i - k >= t - L``): nothing older than the lookback counts.
2. **Structure.** Take the latest confirmed swing high ``H1`` and the one before it, ``H0``
   (both in the window). The market is in a down or sideways structure when ``H1 <= H0``
   (a lower or equal high). Without ``H0`` there is no structure and no signal.
3. **Break.** ``uptrendStart`` fires on bar ``t`` when, in a down/sideways structure,
   ``close[t] > H1 * (1 + sensitivity)`` and no close between ``H1`` and ``t`` was above that
   threshold: the first close clearing the last lower high, so each swing fires at most once.
   (The ``k`` bars that confirm a swing cannot close above it: their highs are at most its.)
4. ``downtrendStart`` mirrors 2–3 with swing lows: ``L1 >= L0`` (a higher or equal low, an up or
   sideways structure) and the first ``close[t] < L1 * (1 - sensitivity)``.

The signal's ``ts`` is bar ``t``'s open time, its price is ``close[t]`` and ``details`` holds the
evidence (swing levels and times, threshold, parameters). Both signals on one bar are impossible
for ``sensitivity >= 0``: the later of the two swings' own close would already have broken the
other level. Because a bar's verdict depends only on itself and its ``L`` predecessors, analysing
a series in pieces (each with its ``L`` bars of history) gives exactly the signals of one pass —
which is what makes incremental analyzer runs and replays agree row by row.

:func:`detect_trend_signals` is the vectorised implementation (numpy, a year of minutes in well
under a second); :func:`reference_trend_signals` is a literal per-bar transcription of the rule,
kept as the oracle the tests and the benchmark compare it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ats_pipelines.signals.config import TrendParams

UPTREND_START = "uptrendStart"
DOWNTREND_START = "downtrendStart"
RULE = "swing_break_v1"
_PIVOT_CHUNK = 65_536  # pivots per break scan: bounds the (pivots x lookback) matrix


class BarsError(ValueError):
    """Bars the rule cannot read; the message names the column or row."""


@dataclass(frozen=True)
class BarArrays:
    """Closed bars as columns: ``ts`` in epoch ms (strictly increasing), prices as float64."""

    ts: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int | None = None) -> BarArrays:
        s = slice(start, stop)
        return BarArrays(self.ts[s], self.high[s], self.low[s], self.close[s])


@dataclass(frozen=True)
class TrendSignal:
    """One detection: ``ts`` is the open time of the bar whose close confirmed it."""

    ts: datetime
    signal_type: str
    price: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return "long" if self.signal_type == UPTREND_START else "short"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _ts_ms(value: Any, where: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise BarsError(f"{where}: timestamp {value.isoformat()} has no time zone (want UTC)")
        return round(value.timestamp() * 1000)
    if isinstance(value, int | np.integer):
        return int(value)
    raise BarsError(f"{where}: ts {value!r} is neither epoch ms nor an aware datetime")


def _ts_column(series: pl.Series) -> np.ndarray:
    if series.len() == 0:
        return np.empty(0, dtype=np.int64)
    if isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:
            raise BarsError("column ts: naive datetimes; want UTC-aware timestamps")
        return series.dt.epoch("ms").to_numpy().astype(np.int64)
    if series.dtype.is_integer():
        return series.to_numpy().astype(np.int64)
    raise BarsError(f"column ts: type {series.dtype} is neither epoch ms nor a datetime")


def to_bar_arrays(bars: BarArrays | pl.DataFrame | pd.DataFrame | Sequence[Any]) -> BarArrays:
    """Columns of a polars/pandas frame (``ts, high, low, close``) or a list of bars (mappings or
    objects with those attributes, e.g. ``lib.bars.Bar``), validated for the rule."""
    if isinstance(bars, BarArrays):
        arrays = bars
    elif isinstance(bars, pd.DataFrame):
        arrays = to_bar_arrays(pl.from_pandas(bars.reset_index(drop="ts" in bars.columns)))
    elif isinstance(bars, pl.DataFrame):
        missing = [c for c in ("ts", "high", "low", "close") if c not in bars.columns]
        if missing:
            raise BarsError(f"bars frame lacks column(s) {', '.join(missing)}")
        arrays = BarArrays(
            _ts_column(bars["ts"]),
            *(bars[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close")),
        )
    else:
        arrays = _from_rows(bars)
    _validate(arrays)
    return arrays


def _from_rows(rows: Iterable[Any]) -> BarArrays:
    ts: list[int] = []
    cols: dict[str, list[float]] = {"high": [], "low": [], "close": []}
    for index, row in enumerate(rows):
        get = row.get if isinstance(row, Mapping) else lambda name, r=row: getattr(r, name, None)
        ts.append(_ts_ms(get("ts"), f"bar {index}"))
        for name, values in cols.items():
            value = get(name)
            if value is None:
                raise BarsError(f"bar {index}: no {name}")
            values.append(float(value))
    return BarArrays(
        np.asarray(ts, dtype=np.int64),
        *(np.asarray(cols[c], dtype=np.float64) for c in ("high", "low", "close")),
    )


def _validate(bars: BarArrays) -> None:
    for name in ("high", "low", "close"):
        values = getattr(bars, name)
        bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
        if bad.size:
            i = int(bad[0])
            raise BarsError(
                f"bar {i} ({_iso(int(bars.ts[i]))}): {name}={float(values[i])!r} "
                "is not a positive finite price"
            )
    bad = np.flatnonzero(bars.high < bars.low)
    if bad.size:
        i = int(bad[0])
        raise BarsError(f"bar {i} ({_iso(int(bars.ts[i]))}): high < low")
    steps = np.flatnonzero(np.diff(bars.ts) <= 0)
    if steps.size:
        i = int(steps[0]) + 1
        raise BarsError(
            f"bar {i} ({_iso(int(bars.ts[i]))}): ts not after the previous bar's "
            "(bars must be sorted and unique)"
        )


def _pivots(values: np.ndarray, k: int, high: bool) -> np.ndarray:
    out = np.zeros(len(values), dtype=bool)
    if len(values) < 2 * k + 1:
        return out
    windows = sliding_window_view(values, 2 * k + 1)
    center = windows[:, k]
    if high:
        hit = (center > windows[:, :k].max(axis=1)) & (center >= windows[:, k + 1 :].max(axis=1))
    else:
        hit = (center < windows[:, :k].min(axis=1)) & (center <= windows[:, k + 1 :].min(axis=1))
    out[k : len(values) - k] = hit
    return out


def _first_breaks(
    close: np.ndarray, pivots: np.ndarray, thresholds: np.ndarray, horizon: int, up: bool
) -> np.ndarray:
    """Per pivot, the first bar within ``horizon`` bars after it whose close breaks its
    threshold, or -1."""
    n = len(close)
    out = np.full(len(pivots), -1, dtype=np.int64)
    steps = np.arange(1, horizon + 1, dtype=np.int64)
    for start in range(0, len(pivots), _PIVOT_CHUNK):
        piv = pivots[start : start + _PIVOT_CHUNK]
        idx = piv[:, None] + steps[None, :]
        inside = idx < n
        closes = close[np.minimum(idx, n - 1)]
        thr = thresholds[start : start + _PIVOT_CHUNK, None]
        hit = ((closes > thr) if up else (closes < thr)) & inside
        any_hit = hit.any(axis=1)
        out[start : start + _PIVOT_CHUNK] = np.where(any_hit, piv + 1 + hit.argmax(axis=1), -1)
    return out


def _side(bars: BarArrays, params: TrendParams, up: bool) -> list[tuple[int, int, int, float]]:
    """``(t, h1, h0, threshold)`` of every bar where one side of the rule fires."""
    k, lookback, s = params.swing, params.lookback, params.sensitivity
    n = len(bars)
    if n <= lookback:
        return []
    level = bars.high if up else bars.low
    is_pivot = _pivots(level, k, high=up)
    index = np.arange(n, dtype=np.int64)
    last = np.maximum.accumulate(np.where(is_pivot, index, -1))
    pivots = np.flatnonzero(is_pivot)
    thresholds = level[pivots] * (1.0 + s) if up else level[pivots] * (1.0 - s)
    breaks = np.full(n, -2, dtype=np.int64)
    breaks[pivots] = _first_breaks(bars.close, pivots, thresholds, lookback - k, up)
    threshold_at = np.zeros(n)
    threshold_at[pivots] = thresholds

    t = index[lookback:]
    h1 = last[t - 1 - k]
    floor = t - lookback + k
    h0 = np.where(h1 >= 1, last[np.maximum(h1 - 1, 0)], -1)
    ok = (h1 >= floor) & (h0 >= floor)
    h1c, h0c = np.maximum(h1, 0), np.maximum(h0, 0)
    structure = level[h0c] >= level[h1c] if up else level[h0c] <= level[h1c]
    fire = ok & structure & (breaks[h1c] == t)
    return [
        (int(a), int(b), int(c), float(threshold_at[b]))
        for a, b, c in zip(t[fire], h1[fire], h0[fire], strict=True)
    ]


def _signal(
    bars: BarArrays, params: TrendParams, t: int, h1: int, h0: int, threshold: float, up: bool
) -> TrendSignal:
    level = bars.high if up else bars.low
    details = {
        "rule": RULE,
        **params.as_dict(),
        "swing_kind": "high" if up else "low",
        "swing_ts": _iso(int(bars.ts[h1])),
        "swing_price": float(level[h1]),
        "prior_swing_ts": _iso(int(bars.ts[h0])),
        "prior_swing_price": float(level[h0]),
        "threshold": threshold,
        "close": float(bars.close[t]),
        "bars_since_swing": t - h1,
    }
    return TrendSignal(
        ts=datetime.fromtimestamp(int(bars.ts[t]) / 1000, UTC),
        signal_type=UPTREND_START if up else DOWNTREND_START,
        price=float(bars.close[t]),
        details=details,
    )


def detect_trend_signals(
    bars: BarArrays | pl.DataFrame | pd.DataFrame | Sequence[Any],
    params: TrendParams,
    *,
    after_ms: int | None = None,
) -> list[TrendSignal]:
    """Signals of the rule on closed ``bars`` in time order; ``after_ms`` keeps only bars
    opened after it (the earlier ones then serve as lookback)."""
    arrays = to_bar_arrays(bars)
    found = [
        (t, h1, h0, thr, up) for up in (True, False) for t, h1, h0, thr in _side(arrays, params, up)
    ]
    if after_ms is not None:
        found = [f for f in found if arrays.ts[f[0]] > after_ms]
    found.sort(key=lambda f: (f[0], not f[4]))
    return [_signal(arrays, params, t, h1, h0, thr, up) for t, h1, h0, thr, up in found]


def reference_trend_signals(
    bars: BarArrays | pl.DataFrame | pd.DataFrame | Sequence[Any], params: TrendParams
) -> list[TrendSignal]:
    """The rule read literally, one bar and one window at a time (slow; the tests' oracle)."""
    arrays = to_bar_arrays(bars)
    k, lookback, s = params.swing, params.lookback, params.sensitivity
    high, low, close = arrays.high, arrays.low, arrays.close
    out: list[TrendSignal] = []

    def swing(i: int, up: bool) -> bool:
        values = high if up else low
        before, after = values[i - k : i], values[i + 1 : i + k + 1]
        if up:
            return all(values[i] > v for v in before) and all(values[i] >= v for v in after)
        return all(values[i] < v for v in before) and all(values[i] <= v for v in after)

    for t in range(lookback, len(arrays)):
        for up in (True, False):
            levels = high if up else low
            swings = [i for i in range(t - lookback + k, t - k) if swing(i, up)]
            if len(swings) < 2:
                continue
            h0, h1 = swings[-2], swings[-1]
            if (levels[h1] > levels[h0]) if up else (levels[h1] < levels[h0]):
                continue  # already trending that way: a continuation, not a start
            threshold = levels[h1] * (1.0 + s) if up else levels[h1] * (1.0 - s)
            crossed = (
                (lambda c, thr=threshold: c > thr) if up else (lambda c, thr=threshold: c < thr)
            )
            if crossed(close[t]) and not any(crossed(close[j]) for j in range(h1 + 1, t)):
                out.append(_signal(arrays, params, t, h1, h0, float(threshold), up))
    return out
