"""Purged walk-forward splits with an embargo.

Rows are events in time; each row's label is only known at ``label_end_ts`` (the end of its
label horizon). A training row may be used to validate a later segment only if its label was
known strictly before the segment starts, minus the embargo:

    label_end_ts[train] < valid_start - embargo

so no training label horizon overlaps a validation row (purging), and a further gap absorbs
serial correlation of features (the embargo). Segments are cut on event *time* (quantiles of
the distinct timestamps), so rows of several symbols at the same bar fall in the same segment.
The most recent segment is held out (:func:`holdout_split`) and never seen by tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ats_pipelines.training.dataset import TrainingDataError

NO_EMBARGO = timedelta(0)


@dataclass(frozen=True)
class Fold:
    """Positions of one walk-forward fold."""

    train: np.ndarray
    valid: np.ndarray
    valid_start: np.datetime64
    valid_end: np.datetime64  # last event time in the validation segment


def _as_ns(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[ns]")


def _embargo(embargo: np.timedelta64 | timedelta) -> np.timedelta64:
    return np.timedelta64(embargo).astype("timedelta64[ns]")


def _boundaries(event_ts: np.ndarray, parts: int) -> np.ndarray:
    """``parts - 1`` segment start times splitting the distinct timestamps evenly."""
    distinct = np.unique(event_ts)
    if len(distinct) < parts:
        raise TrainingDataError(
            f"{len(distinct)} distinct timestamps cannot make {parts} time segments"
        )
    cuts = [len(distinct) * k // parts for k in range(1, parts)]
    return distinct[cuts]


def holdout_split(
    event_ts: np.ndarray,
    label_end_ts: np.ndarray,
    *,
    fraction: float,
    embargo: np.timedelta64 | timedelta = NO_EMBARGO,
) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, holdout positions): the holdout is the last ``fraction`` of time."""
    if not 0 < fraction < 1:
        raise TrainingDataError(f"holdout fraction {fraction} must be between 0 and 1")
    event_ts, label_end_ts = _as_ns(event_ts), _as_ns(label_end_ts)
    distinct = np.unique(event_ts)
    start = distinct[min(len(distinct) - 1, int(len(distinct) * (1 - fraction)))]
    holdout = np.flatnonzero(event_ts >= start)
    train = np.flatnonzero(label_end_ts < start - _embargo(embargo))
    if not len(train) or not len(holdout):
        raise TrainingDataError(
            f"holdout split left {len(train)} training and {len(holdout)} holdout rows"
        )
    return train, holdout


def purged_walk_forward(
    event_ts: np.ndarray,
    label_end_ts: np.ndarray,
    *,
    n_splits: int,
    embargo: np.timedelta64 | timedelta = NO_EMBARGO,
    min_train_rows: int = 1,
) -> list[Fold]:
    """``n_splits`` expanding-window folds over ``n_splits + 1`` time segments.

    Fold k validates segment k on every earlier row whose label was known before the segment
    started (minus the embargo).
    """
    if n_splits < 1:
        raise TrainingDataError(f"n_splits={n_splits}: need at least one fold")
    event_ts, label_end_ts = _as_ns(event_ts), _as_ns(label_end_ts)
    gap = _embargo(embargo)
    starts = _boundaries(event_ts, n_splits + 1)
    folds = []
    for k, start in enumerate(starts, start=1):
        in_segment = event_ts >= start
        if k < n_splits:
            in_segment &= event_ts < starts[k]
        valid = np.flatnonzero(in_segment)
        train = np.flatnonzero(label_end_ts < start - gap)
        if len(train) < min_train_rows or not len(valid):
            raise TrainingDataError(
                f"walk-forward fold {k}/{n_splits} has {len(train)} training and {len(valid)} "
                f"validation rows after purging (embargo {gap}); use more data or fewer splits"
            )
        folds.append(
            Fold(train=train, valid=valid, valid_start=start, valid_end=event_ts[valid].max())
        )
    return folds
