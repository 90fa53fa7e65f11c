"""Feature formulas against direct numpy computations, null-until-full windows, the
multi-timeframe join against a brute-force search, and prefix invariance (no lookahead)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.compute import (
    family_features,
    join_higher,
    series_features,
    truncated_ema,
)
from tests.features.conftest import all_timeframes, synthetic_book, synthetic_minutes


@pytest.fixture(scope="module")
def minutes() -> pl.DataFrame:
    return synthetic_minutes("binance", "BTC/USDT", days=1, seed=11).head(400)


@pytest.fixture(scope="module")
def book(minutes: pl.DataFrame) -> pl.DataFrame:
    return synthetic_book(minutes, every=3)  # two minutes in three without a book


@pytest.fixture(scope="module")
def computed(minutes: pl.DataFrame, book: pl.DataFrame) -> pl.DataFrame:
    return series_features(minutes, "1m", book=book)


def _windows(values: np.ndarray, n: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(values, n)


def _expect(column: pl.Series, expected: np.ndarray, first: int) -> None:
    got = column.to_numpy()
    assert column[:first].null_count() == first, f"{column.name}: not null before row {first}"
    np.testing.assert_allclose(
        got[first:], expected[first:], rtol=1e-9, atol=1e-12, err_msg=column.name
    )


def test_returns_and_volatility(minutes: pl.DataFrame, computed: pl.DataFrame) -> None:
    close = minutes["close"].to_numpy()
    lr = np.concatenate([[np.nan], np.log(close[1:] / close[:-1])])
    for n in cat.RETURN_HORIZONS:
        expected = np.full(len(close), np.nan)
        expected[n:] = np.log(close[n:] / close[:-n])
        _expect(computed[f"ret_{n}"], expected, n)
    for n in cat.VOLATILITY_WINDOWS:
        expected = np.full(len(close), np.nan)
        expected[n - 1 :] = np.sqrt((_windows(lr, n) ** 2).sum(axis=1))
        _expect(computed[f"rv_{n}"], expected, n)


def test_atr_rsi_vwap_volume(minutes: pl.DataFrame, computed: pl.DataFrame) -> None:
    o, h, lo, c, v = (minutes[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    prev = np.concatenate([[np.nan], c[:-1]])
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    atr = np.full(len(c), np.nan)
    atr[13:] = _windows(tr, 14).mean(axis=1)
    _expect(computed["atr_14"], atr, 13)
    _expect(computed["natr_14"], atr / c, 13)

    gain, loss = np.maximum(c - prev, 0), np.maximum(prev - c, 0)
    up, down = np.full(len(c), np.nan), np.full(len(c), np.nan)
    up[13:], down[13:] = _windows(gain, 14).mean(axis=1), _windows(loss, 14).mean(axis=1)
    _expect(computed["rsi_14"], 100 * up / (up + down), 14)

    pv = minutes["vwap"].to_numpy() * v
    vwap = np.full(len(c), np.nan)
    vwap[59:] = _windows(pv, 60).sum(axis=1) / _windows(v, 60).sum(axis=1)
    _expect(computed["vwap_dev_60"], c / vwap - 1, 59)
    for n in cat.VOLUME_Z_WINDOWS:
        z = np.full(len(c), np.nan)
        win = _windows(v, n)
        z[n - 1 :] = (v[n - 1 :] - win.mean(axis=1)) / win.std(axis=1, ddof=1)
        _expect(computed[f"volume_z_{n}"], z, n - 1)
    assert computed["range_ratio"].to_numpy() == pytest.approx((h - lo) / c)
    assert computed["body_ratio"].to_numpy() == pytest.approx((c - o) / (h - lo))
    assert computed["close_position"].to_numpy() == pytest.approx((c - lo) / (h - lo))
    assert computed["taker_buy_ratio"].to_numpy() == pytest.approx(
        minutes["taker_buy_volume"].to_numpy() / v
    )


def test_macd_is_truncated_ema_difference(minutes: pl.DataFrame, computed: pl.DataFrame) -> None:
    c = minutes["close"].to_numpy()

    def ema(x: np.ndarray, span: int, i: int) -> float:
        n = cat.EMA_SPANS_KEPT * span
        w = (1 - 2 / (span + 1)) ** np.arange(n)
        return float((w * x[i - n + 1 : i + 1][::-1]).sum() / w.sum())

    slow = cat.EMA_SPANS_KEPT * cat.MACD_SLOW
    first = slow - 1 + cat.EMA_SPANS_KEPT * cat.MACD_SIGNAL - 1
    macd = np.full(len(c), np.nan)
    for i in range(slow - 1, len(c)):
        macd[i] = (ema(c, cat.MACD_FAST, i) - ema(c, cat.MACD_SLOW, i)) / c[i]
    signal = np.full(len(c), np.nan)
    for i in range(first, len(c)):
        signal[i] = ema(macd, cat.MACD_SIGNAL, i)
    _expect(computed["macd"], macd, slow - 1)
    _expect(computed["macd_signal"], signal, first)
    _expect(computed["macd_hist"], macd - signal, first)
    assert computed["macd_signal"][first] is not None


def test_truncated_ema_of_a_constant_is_the_constant() -> None:
    out = truncated_ema(np.full(100, 3.5), 9)
    assert np.isnan(out[:35]).all()
    np.testing.assert_allclose(out[35:], 3.5)


def test_book_and_time_of_day(
    minutes: pl.DataFrame, book: pl.DataFrame, computed: pl.DataFrame
) -> None:
    joined = minutes.select("ts").join(
        book.with_columns(pl.col("ts").dt.cast_time_unit("ms")),
        on="ts",
        how="left",
        maintain_order="left",
    )
    assert computed["spread_bps"].to_list() == joined["spread_bps_mean"].to_list()
    assert computed["imbalance_5"].null_count() == minutes.height - book.height
    bid, ask = joined["bid_depth_5pct_mean"], joined["ask_depth_5pct_mean"]
    assert computed["depth_imbalance_5pct"].to_list() == pytest.approx(
        ((bid - ask) / (bid + ask)).to_list(), nan_ok=True
    )
    # the 15-bar means take whatever book minutes the window has
    spread = joined["spread_bps_mean"].to_numpy()
    i = 50
    window = spread[i - 14 : i + 1]
    assert computed["spread_bps_mean_15"][i] == pytest.approx(np.nanmean(window))
    for row in computed.select(
        "ts", "minute_of_day", "hour_of_day", "day_of_week", "tod_sin"
    ).iter_rows(named=True):
        ts = row["ts"]
        assert row["minute_of_day"] == ts.hour * 60 + ts.minute
        assert row["hour_of_day"] == ts.hour
        assert row["day_of_week"] == ts.weekday()
        assert row["tod_sin"] == pytest.approx(math.sin(2 * math.pi * row["minute_of_day"] / 1440))


def test_event_timestamp_is_the_bar_close(computed: pl.DataFrame) -> None:
    assert (computed["event_timestamp"] - computed["ts"] == timedelta(minutes=1)).all()
    assert computed.columns == [
        "exchange",
        "symbol",
        "ts",
        "event_timestamp",
        *cat.BASE_FAMILY.features,
    ]


@pytest.mark.parametrize("timeframe", cat.FAMILY_TIMEFRAMES)
def test_rows_up_to_t_do_not_depend_on_later_bars(timeframe: str) -> None:
    """Prefix invariance: computing on the data up to T gives the same rows up to T."""
    frames = all_timeframes(synthetic_minutes("binance", "ETH/USDT", days=2, seed=5))
    bars = frames[timeframe]
    cut = bars.height * 2 // 3
    full = family_features(bars, timeframe)
    prefix = family_features(bars.head(cut), timeframe)
    assert full.head(cut).equals(prefix)


def _minute_frame() -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    minutes = synthetic_minutes("binance", "SOL/USDT", days=2, seed=9)
    # holes in the minutes: a higher bar may then close while no minute row sits at its close
    minutes = minutes.filter(~pl.int_range(pl.len()).is_in(list(range(700, 790))))
    frames = all_timeframes(minutes)
    higher = {tf: family_features(frames[tf], tf) for tf in cat.HIGHER_TIMEFRAMES}
    higher["1h"] = higher["1h"].filter(pl.col("ts").dt.hour() != 7)  # an hour never rolled up
    return family_features(minutes, "1m", higher=higher), higher


def test_each_minute_carries_the_last_closed_higher_bar() -> None:
    rows, higher = _minute_frame()
    checked = 0
    for timeframe in cat.HIGHER_TIMEFRAMES:
        bar = cat.family_of(timeframe).bar
        closes = higher[timeframe]["event_timestamp"].to_list()
        for name in cat.MTF_FEATURES:
            col = cat.mtf_column(timeframe, name)
            values = higher[timeframe][name].to_list()
            for event, got in zip(
                rows["event_timestamp"].to_list(), rows[col].to_list(), strict=True
            ):
                # brute force: the last bar closed at or before the row's close
                index = max((i for i, c in enumerate(closes) if c <= event), default=None)
                if index is None or event - closes[index] >= bar:
                    assert got is None, (col, event)
                else:
                    assert got == values[index], (col, event)
                    checked += 1
    assert checked > 10_000


def test_higher_bar_still_open_is_never_joined() -> None:
    rows, higher = _minute_frame()
    one_hour = higher["1h"].select("event_timestamp", "ret_1").rows()
    by_close = dict(one_hour)
    for event, value in rows.select("event_timestamp", "tf1h_ret_1").iter_rows():
        if value is not None:
            latest = max(c for c in by_close if c <= event)
            assert by_close[latest] == value and latest <= event


def test_join_without_higher_frames_gives_null_columns(computed: pl.DataFrame) -> None:
    out = join_higher(computed.drop([c for c in computed.columns if c.startswith("tf")]), {})
    assert all(
        out[cat.mtf_column(tf, "rsi_14")].null_count() == out.height for tf in cat.HIGHER_TIMEFRAMES
    )
