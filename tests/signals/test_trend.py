"""The swing-break trend rule: every branch on constructed series, hand-checked signals on real
candles, and the vectorised implementation against the literal per-bar reading of the rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ats_pipelines.lib.bars import Bar
from ats_pipelines.signals.config import TrendParams
from ats_pipelines.signals.trend import (
    DOWNTREND_START,
    UPTREND_START,
    BarArrays,
    BarsError,
    TrendSignal,
    detect_trend_signals,
    reference_trend_signals,
    to_bar_arrays,
)
from tests.signals.conftest import read_freqtrade

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)

# Prices where high = low = close, so swings are read straight off the list (k = 1):
#   index  0     1     2   3   4   5  6   7   8     9     10    11
#          10.2  10.1  10  12  11  9  11  10  10.5  10.8  11.5  11.7
# swing highs: 3 (12) and 6 (11), a lower high; swing lows 2 (10), 5 (9), 7 (10).
# Bar 10 is the first close above 11 since the swing at 6 -> uptrendStart; bar 11 is above too
# but the swing is already broken. The lows never break: bar 7's swing (10) is never undercut.
BASE = [10.2, 10.1, 10, 12, 11, 9, 11, 10, 10.5, 10.8, 11.5, 11.7]
P = TrendParams(swing=1, lookback=8, sensitivity=0.0)


def flat_bars(prices: list[float]) -> pl.DataFrame:
    ts = [T0 + i * STEP for i in range(len(prices))]
    return pl.DataFrame({"ts": ts, "high": prices, "low": prices, "close": prices})


def kinds(signals: list[TrendSignal]) -> list[tuple[int, str]]:
    return [((s.ts - T0) // STEP, s.signal_type) for s in signals]


def mirror(prices: list[float]) -> list[float]:
    return [round(30 - p, 6) for p in prices]


def test_first_close_above_a_lower_high_starts_an_uptrend() -> None:
    (signal,) = detect_trend_signals(flat_bars(BASE), P)
    assert kinds([signal]) == [(10, UPTREND_START)]
    assert signal.price == 11.5
    assert signal.details["swing_price"] == 11 and signal.details["prior_swing_price"] == 12
    assert signal.details["swing_ts"] == (T0 + 6 * STEP).isoformat()
    assert signal.details["prior_swing_ts"] == (T0 + 3 * STEP).isoformat()
    assert signal.details["threshold"] == 11 and signal.details["bars_since_swing"] == 4
    assert signal.details["rule"] == "swing_break_v1" and signal.details["lookback"] == 8


def test_mirrored_series_starts_a_downtrend() -> None:
    (signal,) = detect_trend_signals(flat_bars(mirror(BASE)), P)
    assert kinds([signal]) == [(10, DOWNTREND_START)]
    assert signal.price == 18.5
    assert (
        signal.details["swing_kind"],
        signal.details["swing_price"],
        signal.details["prior_swing_price"],
    ) == ("low", 19, 18)


def test_a_bar_needs_lookback_bars_before_it() -> None:
    bars = flat_bars(BASE[:11])  # the break is bar 10: ten bars precede it
    assert kinds(detect_trend_signals(bars, TrendParams(1, 10, 0.0))) == [(10, UPTREND_START)]
    assert detect_trend_signals(bars, TrendParams(1, 11, 0.0)) == []


def test_without_a_prior_swing_in_the_lookback_there_is_no_structure() -> None:
    # lookback 7: bar 10 sees bars 3..9; a swing needs its left neighbour inside, so the swing
    # at 3 no longer counts and the lone swing at 6 gives no lower-high structure
    assert detect_trend_signals(flat_bars(BASE), TrendParams(1, 7, 0.0)) == []


def test_without_swings_there_is_nothing_to_break() -> None:
    rising = [10 + 0.5 * i for i in range(30)]
    assert detect_trend_signals(flat_bars(rising), TrendParams(1, 8, 0.0)) == []
    assert detect_trend_signals(flat_bars(mirror(rising)), TrendParams(1, 8, 0.0)) == []


def test_sensitivity_demands_a_clear_break() -> None:
    # 11 * 1.05 = 11.55: bar 10 (11.5) falls short, bar 11 (11.7) is the first clear break
    # (lookback 9 keeps the swing at 3 in bar 11's window)
    signals = detect_trend_signals(flat_bars(BASE), TrendParams(1, 9, 0.05))
    assert kinds(signals) == [(11, UPTREND_START)]
    assert signals[0].details["threshold"] == pytest.approx(11.55)
    assert detect_trend_signals(flat_bars(BASE), TrendParams(1, 9, 0.07)) == []


def test_each_swing_breaks_once() -> None:
    prices = [*BASE, 11.2, 11.9]  # more closes above 11 after the break: still one signal
    assert kinds(detect_trend_signals(flat_bars(prices), P)) == [(10, UPTREND_START)]


def test_a_higher_high_is_a_continuation_not_a_start() -> None:
    higher = [10.2, 10.1, 10, 12, 11, 9, 12.5, 10, 10.5, 10.8, 13, 13.2]
    assert detect_trend_signals(flat_bars(higher), P) == []
    assert detect_trend_signals(flat_bars(mirror(higher)), P) == []


def test_an_equal_high_counts_as_sideways() -> None:
    equal = [10.2, 10.1, 10, 12, 11, 9, 12, 10, 10.5, 10.8, 12.5, 12.7]
    assert kinds(detect_trend_signals(flat_bars(equal), P)) == [(10, UPTREND_START)]
    assert kinds(detect_trend_signals(flat_bars(mirror(equal)), P)) == [(10, DOWNTREND_START)]


def test_breaks_are_judged_on_the_close_not_the_wick() -> None:
    frame = flat_bars(BASE).with_columns(
        # bar 9 wicks to 11.4 above the swing at 11 but closes at 10.8: not a break
        pl.when(pl.int_range(pl.len()) == 9).then(11.4).otherwise(pl.col("high")).alias("high")
    )
    assert kinds(detect_trend_signals(frame, P)) == [(10, UPTREND_START)]


def test_real_xrp_eth_candles_against_hand_checked_signals(testdata: Path) -> None:
    """XRP/ETH 5m, 2019-10-11 00:00-02:25 (30 bars), swing 2, lookback 12, sensitivity 0.

    In units of 1e-8 above 0.0014 (bar: high/low/close), the swings with 2 bars each side:
      swing highs 3 (00:15) 1794, 8 (00:40) 1965, 14 (01:10) 1836, 19 (01:35) 1794,
                  24 (02:00) 1747;
      swing lows  5 (00:25) 1312, 11 (00:55) 1333, 17 (01:25) 1383, 21 (01:45) 1164.
    Bar t sees swings i with t-10 <= i <= t-3 (two bars each side inside its 12-bar window):
      t=12,13: highs 3, 8 — a higher high (1965 > 1794): no uptrend start;
      t=14,15: lows 5, 11 — a higher low, but closes 1655, 1387 stay above 1333;
      t=17,18: highs 8, 14 (lower high 1836) — closes 1638, 1689 stay below 1836;
      t=20 (01:40): lows 11, 17 (1383 >= 1333, higher low); closes 18, 19 (1689, 1727) held
          above 1383 and close 1233 < 1383 -> downtrendStart at 0.00141233;
      t=21: close 1319 < 1383 again, but the swing broke at 20: nothing;
      t=22..24: highs 14, 19 (lower high 1794) — closes 1193, 1169, 1575 below it;
      t=24: lows 17, 21 — a lower low (1164 < 1383): a continuation, no signal;
      t=27 (02:15): highs 19, 24 (1747 <= 1794, lower high); closes 25, 26 (1650, 1575) below
          1747 and close 1839 > 1747 -> uptrendStart at 0.00141839;
      t=28: close 1762 > 1747, already broken: nothing. No other bar has two swings on a side.
    """
    bars = read_freqtrade(testdata / "freqtrade" / "XRP_ETH-5m.feather").head(30)
    signals = detect_trend_signals(bars, TrendParams(swing=2, lookback=12, sensitivity=0.0))
    got = [
        (
            s.ts.strftime("%H:%M"),
            s.signal_type,
            s.price,
            s.details["swing_price"],
            s.details["prior_swing_price"],
        )
        for s in signals
    ]
    assert got == [
        ("01:40", DOWNTREND_START, 0.00141233, 0.00141383, 0.00141333),
        ("02:15", UPTREND_START, 0.00141839, 0.00141747, 0.00141794),
    ]
    assert signals[0].details["swing_ts"] == "2019-10-11T01:25:00+00:00"
    assert signals[1].details["prior_swing_ts"] == "2019-10-11T01:35:00+00:00"


def random_bars(seed: int, n: int, decimals: int) -> BarArrays:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), decimals)
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(rng.random((2, n)) * 0.6, decimals)
    return BarArrays(
        np.arange(n, dtype=np.int64) * 60_000 + 1_700_000_000_000,
        np.maximum(opens, close) + wick[0],
        np.minimum(opens, close) - wick[1],
        close,
    )


@pytest.mark.parametrize(
    ("seed", "params", "decimals"),
    [
        (1, TrendParams(1, 8, 0.0), 0),
        (6, TrendParams(1, 5, 0.0), 2),  # the tightest window: two swings just fit
        (2, TrendParams(2, 12, 0.0), 1),
        (3, TrendParams(3, 20, 0.001), 2),
        (4, TrendParams(5, 60, 0.0005), 2),
        (5, TrendParams(2, 10, 0.003), 1),
    ],
)
def test_vectorised_rule_equals_the_literal_rule(
    seed: int, params: TrendParams, decimals: int
) -> None:
    bars = random_bars(seed, 1500, decimals)
    fast = detect_trend_signals(bars, params)
    assert fast == reference_trend_signals(bars, params)
    assert fast, "a random walk of 1,500 bars has trend starts"
    # never both directions on one bar
    assert len({s.ts for s in fast}) == len(fast)


def test_real_candles_vectorised_equals_literal(eth_btc_5m: pl.DataFrame) -> None:
    bars = eth_btc_5m.head(2000)
    params = TrendParams(3, 48, 0.001)
    fast = detect_trend_signals(bars, params)
    assert len(fast) > 20
    assert fast == reference_trend_signals(bars, params)


def test_analysing_in_pieces_equals_one_pass() -> None:
    bars, params = random_bars(7, 3000, 2), TrendParams(3, 30, 0.001)
    whole = detect_trend_signals(bars, params)
    pieces: list[TrendSignal] = []
    for start, stop in [(0, 700), (700, 701), (701, 2200), (2200, 3000)]:
        history = max(0, start - params.lookback)
        after = int(bars.ts[start - 1]) if start else None
        pieces += detect_trend_signals(bars.slice(history, stop), params, after_ms=after)
    assert pieces == whole


def test_frames_and_bar_lists_give_the_same_signals(testdata: Path) -> None:
    frame = read_freqtrade(testdata / "freqtrade" / "XRP_ETH-5m.feather").head(200)
    params = TrendParams(2, 12, 0.0)
    expected = detect_trend_signals(frame, params)
    assert expected
    as_pandas = frame.to_pandas()
    assert detect_trend_signals(as_pandas, params) == expected
    assert detect_trend_signals(as_pandas.set_index("ts"), params) == expected
    assert detect_trend_signals(frame.to_dicts(), params) == expected
    as_ms = frame.with_columns(pl.col("ts").dt.epoch("ms"))
    assert detect_trend_signals(as_ms, params) == expected
    bars = [
        Bar(
            "x",
            "XRP/ETH",
            "5m",
            r["ts"],
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            0.0,
            0,
            r["close"],
            0.0,
            None,
            None,
        )
        for r in as_ms.to_dicts()
    ]
    assert detect_trend_signals(bars, params) == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("close"), "lacks column(s) close"),
        (lambda f: f.reverse(), "bar 1 (2024-01-01T00:50:00+00:00): ts not after"),
        (lambda f: pl.concat([f.head(3), f.slice(2)]), "bar 3 (2024-01-01T00:10:00+00:00): ts not"),
        (lambda f: f.with_columns(pl.col("ts").dt.replace_time_zone(None)), "naive datetimes"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 4)
                .then(float("nan"))
                .otherwise(pl.col("close"))
                .alias("close")
            ),
            "bar 4 (2024-01-01T00:20:00+00:00): close=nan",
        ),
        (lambda f: f.with_columns(pl.lit(1.0).alias("high")), "high < low"),
    ],
)
def test_bad_bars_are_refused_naming_the_bar(change, message: str) -> None:
    with pytest.raises(BarsError, match=re.escape(message)):
        to_bar_arrays(change(flat_bars(BASE)))


def test_bar_list_errors_name_the_row() -> None:
    rows = flat_bars(BASE).to_dicts()
    rows[2]["ts"] = rows[2]["ts"].replace(tzinfo=None)
    with pytest.raises(BarsError, match=r"bar 2: timestamp .* has no time zone"):
        to_bar_arrays(rows)
    del rows[1]["low"]
    with pytest.raises(BarsError, match="bar 1: no low"):
        to_bar_arrays(rows)


def test_short_series_have_no_signals() -> None:
    assert detect_trend_signals(flat_bars([]), P) == []
    assert detect_trend_signals(flat_bars(BASE[:3]), P) == []
    empty = pd.DataFrame({"ts": pd.to_datetime([], utc=True), "high": [], "low": [], "close": []})
    assert detect_trend_signals(empty, P) == []
