"""The ``models`` Dagster resource: training budget and backend, Optuna storage, gates, scopes.

Configuration in, plain objects out: :class:`ModelsResource` turns its fields into the training
domain's :class:`TrainerConfig`, promotion and degradation policies and :class:`ModelScope`s;
:class:`ScopeConfig` is one scope as Dagster config.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import optuna
from pydantic import Field

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.local_secrets import with_password
from ats_pipelines.training.config import ModelScope, TrainingSettings
from ats_pipelines.training.labels import Barriers
from ats_pipelines.training.optuna_storage import open_storage
from ats_pipelines.training.outcomes import DegradationPolicy
from ats_pipelines.training.promotion import PromotionPolicy
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


class ModelsResource(dg.ConfigurableResource):
    """Model artifacts and reports, Optuna studies, training budget, gates and model scopes."""

    models_dir: str
    reports_dir: str
    optuna_url: str | None = None  # postgresql+psycopg2://…; None: in-memory studies
    optuna_password_file: str | None = None  # the managed cluster's password, read per use
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
        url = self.optuna_url and with_password(self.optuna_url, self.optuna_password_file)
        return open_storage(url, self.create_optuna_database)

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
