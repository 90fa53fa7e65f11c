"""Purged walk-forward splits on real timestamps: no training label horizon overlaps any
validation row, with and without an embargo, and the labels those horizons come from."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from ats_pipelines.training.dataset import BUY, HOLD, SELL, TrainingDataError
from ats_pipelines.training.labels import Barriers, triple_barrier
from ats_pipelines.training.walkforward import holdout_split, purged_walk_forward


def _real_events(testdata: Path, symbols: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Event and label-end times of the real 1m series (with its gaps): the label of bar i is
    known when its barrier is touched or its horizon ends, at that bar's real timestamp."""
    rows = json.loads((testdata / "freqtrade" / "UNITTEST_BTC-1m.json").read_text())
    ts = np.array([r[0] for r in rows], dtype="datetime64[ms]").astype("datetime64[ns]")
    high, low, close = (np.array([r[k] for r in rows], dtype=float) for k in (2, 3, 4))
    outcome = triple_barrier(close, high, low, Barriers(horizon=30, risk=0.004))
    known = outcome.exit_index >= 0
    event, label_end = ts[known], ts[outcome.exit_index[known]]
    # several symbols share the clock: repeat the series (rows at the same time)
    return np.repeat(event, symbols), np.repeat(label_end, symbols)


@pytest.mark.parametrize("embargo", [timedelta(0), timedelta(minutes=45)])
@pytest.mark.parametrize("n_splits", [3, 5])
@pytest.mark.parametrize("symbols", [1, 3])
def test_no_training_label_horizon_overlaps_a_validation_row(
    testdata: Path, embargo: timedelta, n_splits: int, symbols: int
) -> None:
    event, label_end = _real_events(testdata, symbols)
    assert (label_end > event).all() and len(np.unique(np.diff(np.unique(event)))) > 1  # gaps
    folds = purged_walk_forward(event, label_end, n_splits=n_splits, embargo=embargo)
    assert len(folds) == n_splits
    gap = np.timedelta64(embargo)
    for fold in folds:
        valid_times = event[fold.valid]
        first_valid = valid_times.min()
        # every training label was known strictly before the first validation row (- embargo)
        assert label_end[fold.train].max() < first_valid - gap
        # ... hence no training interval [event, label_end] meets any validation row
        starts, ends = event[fold.train], label_end[fold.train]
        overlaps = (ends[:, None] >= valid_times[None, ::97]) & (
            starts[:, None] <= valid_times[None, ::97]
        )
        assert not overlaps.any()
        # purging removed rows a naive split would have trained on
        naive = np.flatnonzero(event < first_valid)
        purged = np.setdiff1d(naive, fold.train)
        assert len(purged) > 0
        assert (label_end[purged] >= first_valid - gap).all()
        # rows of one timestamp are never split between training and validation
        assert not np.isin(event[fold.train], valid_times).any()
    # validation segments are disjoint and move forward in time
    for earlier, later in itertools.pairwise(folds):
        assert event[earlier.valid].max() < event[later.valid].min()
        assert len(later.train) > len(earlier.train)  # expanding window


def test_the_holdout_is_the_most_recent_time_and_purged_the_same_way(testdata: Path) -> None:
    event, label_end = _real_events(testdata, symbols=2)
    train, holdout = holdout_split(event, label_end, fraction=0.2, embargo=timedelta(minutes=10))
    assert event[holdout].min() > event[train].max()
    assert label_end[train].max() < event[holdout].min() - np.timedelta64(10, "m")
    assert 0.15 < len(holdout) / len(event) < 0.25
    assert len(train) + len(holdout) < len(event)  # the purged rows belong to neither


def test_too_little_data_for_the_folds_is_a_clear_error() -> None:
    event = np.arange(10).astype("datetime64[h]").astype("datetime64[ns]")
    with pytest.raises(TrainingDataError, match="fold 1/3 has 0 training"):
        purged_walk_forward(event, event + np.timedelta64(5, "h"), n_splits=3)
    with pytest.raises(TrainingDataError, match="cannot make 11 time segments"):
        purged_walk_forward(event, event, n_splits=10)


@pytest.mark.parametrize(
    ("highs", "lows", "closes", "label", "rr"),
    [
        # take-profit (+1 %) touched on the 2nd bar: BUY, +reward
        ([100, 100.5, 101.2, 100], [100, 99.6, 100.5, 99], [100, 100, 101, 100], BUY, 2.0),
        # stop (-0.5 %) first: SELL, -1
        ([100, 100.2, 102, 100], [100, 99.4, 99, 99], [100, 100, 100, 100], SELL, -1.0),
        # both in one bar: the stop counts (we cannot tell the order)
        ([100, 101.5, 100, 100], [100, 99.0, 100, 100], [100, 100, 100, 100], SELL, -1.0),
        # neither within the horizon: HOLD, the last close's return in units of risk
        (
            [100, 100.3, 100.4, 100.4],
            [100, 99.8, 99.9, 99.9],
            [100, 100.1, 100.2, 100.3],
            HOLD,
            0.6,
        ),
    ],
)
def test_triple_barrier_labels(
    highs: list, lows: list, closes: list, label: int, rr: float
) -> None:
    out = triple_barrier(
        np.array(closes, float),
        np.array(highs, float),
        np.array(lows, float),
        Barriers(horizon=3, risk=0.005, reward=2.0),
    )
    assert out.label[0] == label
    assert out.realized_rr[0] == pytest.approx(rr)
    assert out.label[-1] == -1 and np.isnan(out.realized_rr[-1])  # horizon not over yet
