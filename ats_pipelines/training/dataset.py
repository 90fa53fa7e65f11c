"""The training set every model is fitted on, and the seam it comes through.

A :class:`TrainingSet` is a feature matrix with, per row, the class label (SELL/HOLD/BUY), the
event time (the bar the features describe), the time the label became known (end of the label
horizon — what purging needs) and the realised reward-to-risk of a long position over that
horizon (what the trading metric needs; a short earns its negative).

:class:`TrainingSetSource` is what the trainer asks for data; the Feast-backed implementation is
:class:`ats_pipelines.training.feast_source.FeastTrainingSetSource`, and tests use in-memory or
synthetic sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

CLASSES = ("SELL", "HOLD", "BUY")  # class code = index: 0 SELL, 1 HOLD, 2 BUY
SELL, HOLD, BUY = 0, 1, 2
DIRECTION = np.array([-1.0, 0.0, 1.0])  # position a predicted class takes


class TrainingDataError(ValueError):
    """The training data is unusable; the message names the column/row and the rule."""


def utc_datetime(value: np.datetime64 | np.ndarray) -> datetime:
    """A ``datetime64`` holding UTC as a tz-aware ``datetime``."""
    micros = int(np.asarray(value, dtype="datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def utc_ns(value: datetime) -> np.datetime64:
    """A tz-aware ``datetime`` as a naive-UTC ``datetime64[ns]``."""
    if value.tzinfo is None:
        raise TrainingDataError(f"{value} must be timezone-aware (UTC)")
    return np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "ns")


def to_utc_ns(values: object, name: str) -> np.ndarray:
    """Timestamps as ``datetime64[ns]`` in UTC (naive), refusing timezone-naive input."""
    ts = pd.to_datetime(pd.Series(values))
    if ts.dt.tz is None:
        raise TrainingDataError(f"{name}: timestamps must be timezone-aware UTC")
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")


@dataclass
class TrainingSet:
    """Features and labels in event-time order (sorted on construction)."""

    X: pd.DataFrame
    y: np.ndarray
    event_ts: np.ndarray  # datetime64[ns], UTC
    label_end_ts: np.ndarray  # datetime64[ns], UTC; >= event_ts
    realized_rr: np.ndarray  # long position's realised reward-to-risk over the horizon
    entities: pd.DataFrame = field(default_factory=pd.DataFrame)  # e.g. exchange, symbol
    feature_service: str = "unknown"

    def __post_init__(self) -> None:
        n = len(self.X)
        for name in ("y", "event_ts", "label_end_ts", "realized_rr"):
            if len(getattr(self, name)) != n:
                raise TrainingDataError(
                    f"{name} has {len(getattr(self, name))} rows, features have {n}"
                )
        if len(self.entities) not in (0, n):
            raise TrainingDataError(f"entities have {len(self.entities)} rows, features {n}")
        self.y = np.asarray(self.y).astype(np.int8, copy=False)
        bad = np.flatnonzero((self.y < 0) | (self.y > 2))
        if bad.size:
            raise TrainingDataError(
                f"label at row {bad[0]} is {self.y[bad[0]]}: use 0 SELL, 1 HOLD, 2 BUY"
            )
        self.event_ts = np.asarray(self.event_ts, dtype="datetime64[ns]")
        self.label_end_ts = np.asarray(self.label_end_ts, dtype="datetime64[ns]")
        early = np.flatnonzero(self.label_end_ts < self.event_ts)
        if early.size:
            raise TrainingDataError(
                f"row {early[0]}: label ends ({self.label_end_ts[early[0]]})"
                f" before its event ({self.event_ts[early[0]]})"
            )
        self.realized_rr = np.asarray(self.realized_rr, dtype=np.float64)
        non_numeric = [c for c in self.X.columns if not pd.api.types.is_numeric_dtype(self.X[c])]
        if non_numeric:
            raise TrainingDataError(f"feature columns must be numeric: {non_numeric}")
        if not np.all(self.event_ts[1:] >= self.event_ts[:-1]):
            order = np.argsort(self.event_ts, kind="stable")
            self._reorder(order)

    def _reorder(self, order: np.ndarray) -> None:
        self.X = self.X.iloc[order].reset_index(drop=True)
        self.y = self.y[order]
        self.event_ts = self.event_ts[order]
        self.label_end_ts = self.label_end_ts[order]
        self.realized_rr = self.realized_rr[order]
        if len(self.entities):
            self.entities = self.entities.iloc[order].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def features(self) -> list[str]:
        return [str(c) for c in self.X.columns]

    def take(self, idx: np.ndarray) -> TrainingSet:
        """Rows ``idx`` (positions, kept in order)."""
        return TrainingSet(
            X=self.X.iloc[idx].reset_index(drop=True),
            y=self.y[idx],
            event_ts=self.event_ts[idx],
            label_end_ts=self.label_end_ts[idx],
            realized_rr=self.realized_rr[idx],
            entities=self.entities.iloc[idx].reset_index(drop=True)
            if len(self.entities)
            else self.entities,
            feature_service=self.feature_service,
        )

    def window(self) -> tuple[datetime, datetime]:
        """First and last event time, tz-aware UTC."""
        if not len(self):
            raise TrainingDataError("the training set is empty")
        return utc_datetime(self.event_ts[0]), utc_datetime(self.event_ts[-1])


class TrainingSetSource(Protocol):
    """Where a model scope's training data comes from."""

    def load(self, scope: str, start: datetime, end: datetime) -> TrainingSet:
        """Rows whose event time is in ``[start, end)`` and whose label is known by ``end``."""
        ...


@dataclass
class InMemorySource:
    """A fixed training set, cut to the requested window (tests, synthetic data, the bench)."""

    data: TrainingSet

    def load(self, scope: str, start: datetime, end: datetime) -> TrainingSet:
        lo, hi = utc_ns(start), utc_ns(end)
        keep = np.flatnonzero(
            (self.data.event_ts >= lo) & (self.data.event_ts < hi) & (self.data.label_end_ts <= hi)
        )
        return self.data.take(keep)
