"""Forward-return classes and triple-barrier outcomes on constructed price paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ats_pipelines.features.labels import (
    BUY,
    HOLD,
    SELL,
    STOP_LOSS,
    TAKE_PROFIT,
    TIME_LIMIT,
    LabelSpec,
    series_labels,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SPEC = LabelSpec(horizon=3, threshold=0.01, take_profit=0.02, stop_loss=0.01)


def bars(
    closes: list[float], highs: list[float] | None = None, lows: list[float] | None = None
) -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame(
        {
            "exchange": "x",
            "symbol": "A/B",
            "ts": [T0 + timedelta(minutes=i) for i in range(n)],
            "close": [float(c) for c in closes],
            "high": [float(c) for c in highs] if highs else [c * 1.001 for c in closes],
            "low": [float(c) for c in lows] if lows else [c * 0.999 for c in closes],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


@pytest.mark.parametrize(
    ("highs", "lows", "closes", "exit_", "label", "bars_held", "ret"),
    [
        # take-profit touched on the second bar after entry
        (
            [100, 101, 102.5, 101],
            [100, 99.5, 101, 100],
            [100, 100.5, 101, 100.5],
            TAKE_PROFIT,
            BUY,
            2,
            0.02,
        ),
        # stop-loss on the first bar
        (
            [100, 100.5, 103, 101],
            [100, 98.9, 99, 99],
            [100, 99.5, 101, 100],
            STOP_LOSS,
            SELL,
            1,
            -0.01,
        ),
        # both barriers inside one bar: the stop is assumed first
        (
            [100, 102.5, 101, 101],
            [100, 98.5, 99.5, 100],
            [100, 100, 100, 100],
            STOP_LOSS,
            SELL,
            1,
            -0.01,
        ),
        # neither: out at the close of the last bar of the horizon
        (
            [100, 100.5, 100.8, 100.9],
            [100, 99.5, 99.6, 99.7],
            [100, 100.2, 100.4, 100.6],
            TIME_LIMIT,
            HOLD,
            3,
            0.006,
        ),
    ],
)
def test_triple_barrier(
    highs: list[float],
    lows: list[float],
    closes: list[float],
    exit_: str,
    label: str,
    bars_held: int,
    ret: float,
) -> None:
    out = series_labels(bars(closes, highs, lows), SPEC)
    first = out.row(0, named=True)
    assert (first["tb_exit"], first["tb_label"], first["tb_bars"]) == (exit_, label, bars_held)
    assert first["tb_return"] == pytest.approx(ret)
    assert first["tb_reward_risk"] == pytest.approx(ret / SPEC.stop_loss)
    assert first["label_timestamp"] == T0 + timedelta(minutes=bars_held + 1)
    assert first["event_timestamp"] == T0 + timedelta(minutes=1)


@pytest.mark.parametrize(("final", "label"), [(102.0, BUY), (98.0, SELL), (100.5, HOLD)])
def test_forward_return_class(final: float, label: str) -> None:
    closes = [100.0, 100.0, 100.0, final]
    out = series_labels(bars(closes, [c * 1.03 for c in closes], [c * 0.97 for c in closes]), SPEC)
    assert out["label"][0] == label
    assert out["forward_return"][0] == pytest.approx(np.log(final / 100))


def test_rows_without_a_full_horizon_get_no_label() -> None:
    out = series_labels(bars([100.0 + i for i in range(10)]), SPEC)
    assert out.height == 10 - SPEC.horizon
    assert series_labels(bars([100.0, 101.0]), SPEC).height == 0


@pytest.mark.parametrize("bad", [{"horizon": 0}, {"stop_loss": 0.0}, {"timeframe": "7x"}])
def test_bad_spec_is_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        LabelSpec(**bad)
