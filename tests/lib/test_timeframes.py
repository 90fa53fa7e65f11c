"""Timeframe parsing and clock alignment, scalar and vectorised, against known calendar facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ats_pipelines.lib.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    TimeframeError,
    bucket_end_ms,
    divides,
    floor_array,
    floor_datetime,
    floor_expr,
    floor_ms,
    from_duration,
    is_aligned,
    is_aligned_array,
    is_aligned_expr,
    parse_timeframe,
    sort_timeframes,
    timeframe_ms,
    to_timedelta,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("1s", 1_000),
        ("1m", MINUTE_MS),
        ("5m", 5 * MINUTE_MS),
        ("15m", 15 * MINUTE_MS),
        ("1h", HOUR_MS),
        ("4h", 4 * HOUR_MS),
        ("1d", DAY_MS),
        ("3d", 3 * DAY_MS),
        ("1w", 7 * DAY_MS),
        ("90m", 90 * MINUTE_MS),
    ],
)
def test_fixed_durations(value: str, expected_ms: int) -> None:
    assert timeframe_ms(value) == expected_ms
    assert to_timedelta(value) == timedelta(milliseconds=expected_ms)


@pytest.mark.parametrize("value", ["", "m", "0m", "01m", "1x", "1 m", "1H", "-1m", "1.5h", "m1"])
def test_bad_timeframes_name_the_value(value: str) -> None:
    with pytest.raises(TimeframeError, match=repr(value).replace("(", r"\(")):
        parse_timeframe(value)


def test_non_string_is_refused() -> None:
    with pytest.raises(TimeframeError, match="60"):
        parse_timeframe(60)  # type: ignore[arg-type]


def test_month_is_calendar_and_freqtrade_spelling_accepted() -> None:
    month = parse_timeframe("1M")
    assert month.is_calendar and month.ms is None
    assert parse_timeframe("1Mo") == month
    assert parse_timeframe("1m") != month  # case matters: m is minutes
    with pytest.raises(TimeframeError, match="'1M'"):
        timeframe_ms("1M")


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (60_000, "1m"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
        (DAY_MS, "1d"),
        (7 * DAY_MS, "1w"),
        (timedelta(hours=4), "4h"),
        (1_000, "1s"),
    ],
)
def test_from_duration_round_trips(duration: int | timedelta, expected: str) -> None:
    assert from_duration(duration) == expected
    assert to_timedelta(expected) == (
        duration if isinstance(duration, timedelta) else timedelta(milliseconds=duration)
    )


@pytest.mark.parametrize("duration", [0, -60_000, 1_500])
def test_from_duration_refuses_fractions(duration: int) -> None:
    with pytest.raises(TimeframeError, match=str(duration)):
        from_duration(duration)


@pytest.mark.parametrize(
    ("ts", "tf", "floor", "end"),
    [
        ("2019-10-11 00:00:11.620", "1m", "2019-10-11 00:00:00", "2019-10-11 00:01:00"),
        ("2019-10-11 00:04:59.999", "5m", "2019-10-11 00:00:00", "2019-10-11 00:05:00"),
        ("2019-10-11 13:37:00", "4h", "2019-10-11 12:00:00", "2019-10-11 16:00:00"),
        ("2019-10-11 13:37:00", "1d", "2019-10-11 00:00:00", "2019-10-12 00:00:00"),
        # Binance weekly klines open on Monday; 2019-10-07 was a Monday
        ("2019-10-11 13:37:00", "1w", "2019-10-07 00:00:00", "2019-10-14 00:00:00"),
        ("2019-10-07 00:00:00", "1w", "2019-10-07 00:00:00", "2019-10-14 00:00:00"),
        ("2019-10-11 13:37:00", "1M", "2019-10-01 00:00:00", "2019-11-01 00:00:00"),
        ("2020-02-29 23:59:59", "1M", "2020-02-01 00:00:00", "2020-03-01 00:00:00"),
        ("2019-12-31 23:59:59", "3M", "2019-10-01 00:00:00", "2020-01-01 00:00:00"),
        # before the epoch the floor still goes down, not toward zero
        ("1969-12-31 23:59:30", "1m", "1969-12-31 23:59:00", "1970-01-01 00:00:00"),
    ],
)
def test_floor_and_end(ts: str, tf: str, floor: str, end: str) -> None:
    assert floor_ms(ms(ts), tf) == ms(floor)
    assert bucket_end_ms(ms(ts), tf) == ms(end)
    assert is_aligned(ms(floor), tf)
    assert is_aligned(ms(ts), tf) == (ts == floor)


def test_floor_datetime_requires_aware() -> None:
    aware = datetime(2019, 10, 11, 13, 37, 12, tzinfo=UTC)
    assert floor_datetime(aware, "1h") == datetime(2019, 10, 11, 13, tzinfo=UTC)
    with pytest.raises(TimeframeError, match="no time zone"):
        floor_datetime(aware.replace(tzinfo=None), "1h")


@pytest.mark.parametrize(
    "tf", ["1s", "1m", "5m", "15m", "1h", "4h", "1d", "3d", "1w", "2w", "1M", "2M", "3M", "12M"]
)
def test_vectorised_matches_scalar(tf: str) -> None:
    rng = np.random.default_rng(7)
    ts = np.concatenate([rng.integers(-(10**12), 4 * 10**12, 5_000), [0, -1, 1]]).astype(np.int64)
    expected = [floor_ms(int(t), tf) for t in ts]
    assert floor_array(ts, tf).tolist() == expected
    frame = pl.DataFrame({"t": ts})
    assert frame.select(floor_expr(pl.col("t"), tf))["t"].to_list() == expected
    aligned = np.array(expected, dtype=np.int64)
    assert is_aligned_array(aligned, tf).all()
    assert frame.select(is_aligned_expr(pl.col("t"), tf))["t"].to_list() == [
        bool(a) for a in is_aligned_array(ts, tf)
    ]


@pytest.mark.parametrize(
    ("lower", "higher", "expected"),
    [
        ("1m", "5m", True),
        ("5m", "15m", True),
        ("15m", "1h", True),
        ("1m", "1d", True),
        ("1h", "1w", True),
        ("1d", "1w", True),
        ("1d", "1M", True),
        ("1M", "3M", True),
        ("5m", "1h", True),
        ("2d", "1w", False),
        ("3d", "1w", False),
        ("1w", "1M", False),
        ("7m", "1h", False),
        ("1h", "1m", False),
        ("2M", "3M", False),
    ],
)
def test_divides(lower: str, higher: str, expected: bool) -> None:
    assert divides(lower, higher) is expected


def test_sort_timeframes_dedupes() -> None:
    assert sort_timeframes(["1d", "1m", "1Mo", "4h", "1M", "5m", "1m"]) == [
        "1m",
        "5m",
        "4h",
        "1d",
        "1M",
    ]
