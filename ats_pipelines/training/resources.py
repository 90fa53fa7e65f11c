"""Dagster resources of the training domain: ``models`` and ``training_data``.

The one module of ``ats_pipelines.training`` that imports Dagster (like
``ats_pipelines.exchange.resource``): configuration in, plain objects out.

* :class:`ModelsResource` — artifact and report folders, the Optuna storage (a database on the
  platform's server, created when missing), the training budget and backend, the queue's
  reclaim timeout, the promotion/drift/degradation thresholds and the model scopes.
* :class:`TrainingDataResource` — where features come from: :class:`FeastTrainingData` (the
  feature store; production and local) or :class:`SyntheticTrainingData` (a named stand-in with
  a planted signal or pure noise, for tests and benchmarks — not market data).

:func:`training_resources` builds both for ``ats_pipelines/defs/resources.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import optuna
import pandas as pd
from pydantic import Field

from ats_pipelines.config import Settings
from ats_pipelines.features.lake import Lake
from ats_pipelines.features.resource import FeastResource
from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.training.config import (
    ModelScope,
    TrainingSettings,
    load_training_settings,
    sqlalchemy_url,
)
from ats_pipelines.training.dataset import TrainingSet, TrainingSetSource
from ats_pipelines.training.feast_source import (
    FeastOnlineSource,
    FeastTrainingSetSource,
    service_features,
)
from ats_pipelines.training.labels import Barriers
from ats_pipelines.training.outcomes import DegradationPolicy
from ats_pipelines.training.predict import LatestFeatures, OnlineFeatureSource
from ats_pipelines.training.promotion import PromotionPolicy
from ats_pipelines.training.synthetic import make_training_set
from ats_pipelines.training.trainer import TrainerConfig


class ScopeConfig(dg.Config):
    """One model scope (see ``ats_pipelines.training.config.ModelScope``)."""

    feature_service: str = "signals_v1"
    exchange: str = "binance"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    timeframe: str = "1m"
    lookback_days: int = 90
    label_set: str = "labels_1m"
    horizon: int = 15
    risk: float = 0.002
    reward: float = 2.0
    momentum_feature: str = "ret_15"
    volatility_feature: str | None = "natr_14"
    source: str = "feast"  # or "synthetic:planted" / "synthetic:noise" (demo stand-in)

    @classmethod
    def from_scope(cls, scope: ModelScope) -> ScopeConfig:
        return cls(
            feature_service=scope.feature_service,
            exchange=scope.exchange,
            symbols=list(scope.symbols),
            timeframe=scope.timeframe,
            lookback_days=scope.lookback.days,
            label_set=scope.label_set,
            horizon=scope.barriers.horizon,
            risk=scope.barriers.risk,
            reward=scope.barriers.reward,
            momentum_feature=scope.momentum_feature,
            volatility_feature=scope.volatility_feature,
            source=scope.source,
        )

    def to_scope(self, name: str) -> ModelScope:
        return ModelScope(
            name=name,
            feature_service=self.feature_service,
            exchange=self.exchange,
            symbols=tuple(self.symbols),
            timeframe=self.timeframe,
            lookback=timedelta(days=self.lookback_days),
            label_set=self.label_set,
            barriers=Barriers(self.horizon, self.risk, self.reward),
            momentum_feature=self.momentum_feature,
            volatility_feature=self.volatility_feature,
            source=self.source,
        )


async def _ensure_database(url: str) -> None:
    from ats_pipelines.db.connect import connection, database_name, replace_database
    from ats_pipelines.db.sqlid import quote_ident

    name = database_name(url)
    async with connection(replace_database(url, "postgres")) as admin:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
            except Exception as exc:  # a concurrent creator won the race
                if "already exists" not in str(exc):
                    raise


def ensure_optuna_database(sqlalchemy_url: str) -> None:
    """Create the Optuna database on the platform's server if it does not exist yet."""
    plain = "postgresql://" + sqlalchemy_url.split("://", 1)[1]
    asyncio.run(_ensure_database(plain))


class ModelsResource(dg.ConfigurableResource):
    """Model artifacts and reports, Optuna studies, training budget, gates and model scopes."""

    models_dir: str
    reports_dir: str
    optuna_url: str | None = None  # postgresql+psycopg2://…; None: in-memory studies
    create_optuna_database: bool = True
    n_trials: int = 30
    timeout_s: float | None = 1800.0
    num_threads: int = 1
    tune_max_rows: int | None = 300_000
    n_splits: int = 3
    holdout_fraction: float = 0.2
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    backend: str = "local"
    dask_scheduler: str | None = None
    stale_after_s: int = 900
    max_attempts: int = 3
    claims_per_tick: int = 1
    max_concurrent_runs: int = 1  # training runs at once (the sensor claims no more)
    min_signals: int = 30
    log_loss_margin: float = 0.005
    rr_margin: float = 0.02
    champion_log_loss_margin: float = 0.0
    champion_rr_tolerance: float = 0.05
    psi_threshold: float = 0.25
    drift_window_days: int = 7
    degradation_min_signals: int = 50
    degradation_min_win_rate: float = 0.40
    degradation_min_mean_rr: float = 0.0
    scopes: dict[str, ScopeConfig] = Field(default_factory=lambda: {"default": ScopeConfig()})

    @classmethod
    def from_settings(cls, settings: TrainingSettings, **overrides: object) -> ModelsResource:
        values: dict[str, object] = dict(
            models_dir=str(settings.models_dir),
            reports_dir=str(settings.reports_dir),
            optuna_url=settings.optuna_url,
            create_optuna_database=settings.optuna_database is not None,
            n_trials=settings.n_trials,
            timeout_s=settings.timeout_s,
            num_threads=settings.num_threads,
            tune_max_rows=settings.tune_max_rows,
            backend=settings.backend,
            dask_scheduler=settings.dask_scheduler,
            stale_after_s=int(settings.stale_after.total_seconds()),
            max_attempts=settings.max_attempts,
            claims_per_tick=settings.claims_per_tick,
            scopes={name: ScopeConfig.from_scope(s) for name, s in settings.scopes.items()},
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **values: object) -> ModelsResource:
        """A copy with some settings replaced (e.g. the demo's trial budget and scope)."""
        return type(self)(**{**self.model_dump(), **values})

    def scope(self, name: str) -> ModelScope:
        if name not in self.scopes:
            raise KeyError(
                f"unknown model scope {name!r}; configured: {', '.join(sorted(self.scopes))}"
            )
        return self.scopes[name].to_scope(name)

    def trainer_config(
        self, scope: ModelScope, n_trials: int | None = None, timeout_s: float | None = None
    ) -> TrainerConfig:
        return TrainerConfig(
            n_trials=n_trials or self.n_trials,
            timeout_s=timeout_s or self.timeout_s,
            n_splits=self.n_splits,
            holdout_fraction=self.holdout_fraction,
            embargo=to_timedelta(scope.timeframe) * scope.barriers.horizon,
            max_rounds=self.max_rounds,
            early_stopping_rounds=self.early_stopping_rounds,
            num_threads=self.num_threads,
            tune_max_rows=self.tune_max_rows,
            momentum_feature=scope.momentum_feature,
        )

    def storage(self) -> optuna.storages.BaseStorage | None:
        """The study storage; heartbeats let a resumed request fail a crashed run's trial."""
        if self.optuna_url is None:
            return None
        if self.create_optuna_database:
            ensure_optuna_database(self.optuna_url)
        with warnings.catch_warnings():  # heartbeats are "experimental" since optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                self.optuna_url,
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=60,
                grace_period=180,
            )

    def promotion_policy(self) -> PromotionPolicy:
        return PromotionPolicy(
            min_signals=self.min_signals,
            log_loss_margin=self.log_loss_margin,
            rr_margin=self.rr_margin,
            champion_log_loss_margin=self.champion_log_loss_margin,
            champion_rr_tolerance=self.champion_rr_tolerance,
        )

    def degradation_policy(self) -> DegradationPolicy:
        return DegradationPolicy(
            min_signals=self.degradation_min_signals,
            min_win_rate=self.degradation_min_win_rate,
            min_mean_rr=self.degradation_min_mean_rr,
        )

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir)

    @property
    def reports_path(self) -> Path:
        return Path(self.reports_dir)


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


class _WholeSet:
    """Synthetic data ignores the requested window (its clock starts in 2024)."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data

    def load(self, scope: str, start: datetime, end: datetime) -> TrainingSet:
        return self.data


class _LastRows:
    def __init__(self, data: TrainingSet) -> None:
        self.data = data

    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        started = time.perf_counter()
        rows = np.flatnonzero(self.data.event_ts == self.data.event_ts.max())
        latest = self.data.take(rows)
        ents = latest.entities.assign(ts=pd.to_datetime(latest.event_ts).tz_localize("UTC"))
        X = pd.DataFrame(latest.X.loc[:, features])
        return LatestFeatures(ents, X, (time.perf_counter() - started) * 1000.0)


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
        return _WholeSet(self.data())

    def online_source(self) -> OnlineFeatureSource:
        return _LastRows(self.data())

    def served_features(self, scope: ModelScope) -> list[str] | None:
        return self.data().features

    def recent_features(
        self, scope: ModelScope, features: list[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        """The last tenth of the rows, shifted by ``drift_shift`` standard deviations."""
        X = self.data().X
        recent = X.iloc[-max(1, len(X) // 10) :][features].reset_index(drop=True)
        return recent + self.drift_shift if self.drift_shift else recent


class _Routed:
    """Online features per scope: Feast, or the synthetic stand-in for synthetic scopes."""

    def __init__(self, feast: Callable[[], FeastOnlineSource]) -> None:
        self.feast = feast  # opened on first use: a synthetic scope needs no store

    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        if scope.source.startswith("synthetic:"):
            return _LastRows(synthetic_scope_data(scope)).latest(scope, features)
        return self.feast().latest(scope, features)


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
        if scope.source.startswith("synthetic:"):
            return _WholeSet(synthetic_scope_data(scope))
        return self._source(scope)

    def online_source(self) -> OnlineFeatureSource:
        return _Routed(lambda: FeastOnlineSource(self.feast.store(), self.full_feature_names))

    def served_features(self, scope: ModelScope) -> list[str] | None:
        if scope.source.startswith("synthetic:"):
            return synthetic_scope_data(scope).features
        try:
            service = self.feast.store().get_feature_service(scope.feature_service)
        except Exception:  # not registered (yet): the gate reports it as unreadable
            return None
        return service_features(service, self.full_feature_names)

    def recent_features(
        self, scope: ModelScope, features: list[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        if scope.source.startswith("synthetic:"):
            X = synthetic_scope_data(scope).X
            return X.iloc[-max(1, len(X) // 10) :][features].reset_index(drop=True)
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
        models = ModelsResource.from_settings(
            training, optuna_url=sqlalchemy_url(settings.database_url_for(training.optuna_database))
        )
    else:
        models = ModelsResource.from_settings(training)
    return {"models": models, "training_data": FeastTrainingData(feast=feast)}


__all__ = [
    "FeastTrainingData",
    "ModelsResource",
    "ScopeConfig",
    "SyntheticTrainingData",
    "TrainingDataResource",
    "ensure_optuna_database",
    "training_resources",
]
