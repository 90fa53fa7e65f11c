"""Synthetic stand-ins for the feature store's sources (planted signal or noise; never market
data): what ``SyntheticTrainingData`` serves to tests and benchmarks, and what a scope whose
``source`` is ``synthetic:<kind>`` (the demo's) is served instead of Feast."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.training.config import ModelScope
from ats_pipelines.training.dataset import TrainingSet
from ats_pipelines.training.feast_source import FeastOnlineSource
from ats_pipelines.training.predict import LatestFeatures
from ats_pipelines.training.synthetic import make_training_set


class WholeSet:
    """Synthetic data ignores the requested window (its clock starts in 2024)."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data

    def load(self, scope: str, start: datetime, end: datetime) -> TrainingSet:
        return self.data


class LastRows:
    """Online features: the rows of the set's latest event time."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data

    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        started = time.perf_counter()
        rows = np.flatnonzero(self.data.event_ts == self.data.event_ts.max())
        latest = self.data.take(rows)
        ents = latest.entities.assign(ts=pd.to_datetime(latest.event_ts).tz_localize("UTC"))
        X = pd.DataFrame(latest.X.loc[:, features])
        return LatestFeatures(ents, X, (time.perf_counter() - started) * 1000.0)


class RoutedOnline:
    """Online features per scope: Feast, or the synthetic stand-in for synthetic scopes."""

    def __init__(self, feast: Callable[[], FeastOnlineSource]) -> None:
        self.feast = feast  # opened on first use: a synthetic scope needs no store

    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        if is_synthetic(scope):
            return LastRows(synthetic_scope_data(scope)).latest(scope, features)
        return self.feast().latest(scope, features)


def is_synthetic(scope: ModelScope) -> bool:
    return scope.source.startswith("synthetic:")


def last_tenth(X: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The "recent" feature rows of a synthetic set: its last tenth."""
    return X.iloc[-max(1, len(X) // 10) :][features].reset_index(drop=True)


def synthetic_scope_data(scope: ModelScope) -> TrainingSet:
    """The stand-in rows of a ``synthetic:<kind>`` scope (its symbols, its timeframe)."""
    kind = scope.source.split(":", 1)[1]
    data = make_training_set(
        6000,
        8,
        kind=kind,
        seed=3,
        symbols=len(scope.symbols),
        bar=to_timedelta(scope.timeframe),
        horizon=scope.barriers.horizon,
        reward=scope.barriers.reward,
        feature_service="synthetic",
    )
    names = dict(zip(sorted(set(data.entities["symbol"])), scope.symbols, strict=True))
    data.entities = data.entities.assign(
        exchange=scope.exchange, symbol=[names[s] for s in data.entities["symbol"]]
    )
    return data
