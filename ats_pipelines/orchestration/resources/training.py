"""Dagster resources of the training domain: ``training_data`` and, with
:class:`~ats_pipelines.orchestration.resources.models.ModelsResource`, ``models``.

* :class:`TrainingDataResource` — where features come from: :class:`FeastTrainingData` (the
  feature store; production and local) or :class:`SyntheticTrainingData` (a named stand-in with
  a planted signal or pure noise, for tests and benchmarks — not market data).

:func:`training_resources` builds both for ``ats_pipelines/defs/resources.py``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from ats_pipelines.config import DEFAULT_DB_USER, Settings
from ats_pipelines.features.lake import Lake
from ats_pipelines.local_secrets import secret_path, without_password
from ats_pipelines.orchestration.resources.features import FeastResource
from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.training.config import (
    ModelScope,
    load_training_settings,
    sqlalchemy_url,
)
from ats_pipelines.training.dataset import TrainingSet, TrainingSetSource
from ats_pipelines.training.feast_source import (
    FeastOnlineSource,
    FeastTrainingSetSource,
    service_features,
)
from ats_pipelines.training.predict import OnlineFeatureSource
from ats_pipelines.training.synthetic import make_training_set
from ats_pipelines.training.synthetic_sources import (
    LastRows,
    RoutedOnline,
    WholeSet,
    is_synthetic,
    last_tenth,
    synthetic_scope_data,
)


class TrainingDataResource(dg.ConfigurableResource):
    """Where training sets, recent features and online features come from (abstract)."""

    def training_source(self, scope: ModelScope) -> TrainingSetSource:
        raise NotImplementedError

    def online_source(self) -> OnlineFeatureSource:
        raise NotImplementedError

    def served_features(self, scope: ModelScope) -> list[str] | None:
        """The feature service's features now (None when it cannot be read)."""
        raise NotImplementedError

    def recent_features(
        self, scope: ModelScope, features: list[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Feature rows (no labels needed) with event time in ``[start, end)``, for drift."""
        raise NotImplementedError


class SyntheticTrainingData(TrainingDataResource):
    """Synthetic stand-in for the feature store (planted signal or noise); never market data."""

    kind: str = "planted"
    rows: int = 6000
    features: int = 10
    seed: int = 0
    symbols: int = 2
    strength: float = 1.0
    drift_shift: float = 0.0  # shifts the "recent" features (tests of the drift trigger)
    feature_service: str = "synthetic"

    def data(self) -> TrainingSet:
        return make_training_set(
            self.rows,
            self.features,
            kind=self.kind,
            seed=self.seed,
            symbols=self.symbols,
            strength=self.strength,
            feature_service=self.feature_service,
        )

    def training_source(self, scope: ModelScope) -> TrainingSetSource:
        return WholeSet(self.data())

    def online_source(self) -> OnlineFeatureSource:
        return LastRows(self.data())

    def served_features(self, scope: ModelScope) -> list[str] | None:
        return self.data().features

    def recent_features(
        self, scope: ModelScope, features: list[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        """The last tenth of the rows, shifted by ``drift_shift`` standard deviations."""
        recent = last_tenth(self.data().X, features)
        return recent + self.drift_shift if self.drift_shift else recent


class FeastTrainingData(TrainingDataResource):
    """Training sets (lake labels + Feast historical features), drift and online features.

    A scope whose ``source`` is ``synthetic:<kind>`` is served by the synthetic stand-in
    instead (the demo's scope); every other scope reads Feast.
    """

    feast: FeastResource
    full_feature_names: bool = False  # needed for services whose views share feature names

    def _source(self, scope: ModelScope) -> FeastTrainingSetSource:
        return FeastTrainingSetSource(
            self.feast.store(), Lake(Path(self.feast.lake_root)), scope, self.full_feature_names
        )

    def training_source(self, scope: ModelScope) -> TrainingSetSource:
        if is_synthetic(scope):
            return WholeSet(synthetic_scope_data(scope))
        return self._source(scope)

    def online_source(self) -> OnlineFeatureSource:
        return RoutedOnline(lambda: FeastOnlineSource(self.feast.store(), self.full_feature_names))

    def served_features(self, scope: ModelScope) -> list[str] | None:
        if is_synthetic(scope):
            return synthetic_scope_data(scope).features
        try:
            service = self.feast.store().get_feature_service(scope.feature_service)
        except Exception:  # not registered (yet): the gate reports it as unreadable
            return None
        return service_features(service, self.full_feature_names)

    def recent_features(
        self, scope: ModelScope, features: list[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        if is_synthetic(scope):
            return last_tenth(synthetic_scope_data(scope).X, features)
        return self._source(scope).recent_features(features, start, end)


def training_resources(
    settings: Settings, feast: FeastResource, prod: bool
) -> dict[str, dg.ConfigurableResource]:
    """``models`` and ``training_data`` for one environment (prod: the Optuna URL, which holds
    credentials, is read from ``ATS_OPTUNA_URL`` when a run starts)."""
    training = load_training_settings({**os.environ, "ATS_ENV": settings.ats_env})
    if prod:
        models = ModelsResource.from_settings(
            training, optuna_url=dg.EnvVar("ATS_OPTUNA_URL"), create_optuna_database=False
        )
    elif training.optuna_database is not None:  # the database on this settings' server
        url = sqlalchemy_url(settings.database_url_for(training.optuna_database))
        if settings.managed_database:  # the password is read when a study opens
            models = ModelsResource.from_settings(
                training,
                optuna_url=without_password(url),
                optuna_password_file=str(secret_path(settings.state_dir, DEFAULT_DB_USER)),
            )
        else:  # on an external server the URL came from the environment (left as given)
            models = ModelsResource.from_settings(training, optuna_url=url)
    else:
        models = ModelsResource.from_settings(training)
    return {"models": models, "training_data": FeastTrainingData(feast=feast)}


__all__ = [
    "FeastTrainingData",
    "SyntheticTrainingData",
    "TrainingDataResource",
    "training_resources",
]
