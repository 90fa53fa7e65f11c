"""Settings of the training domain, read from the environment once per call.

Like :func:`ats_pipelines.config.load_settings`, nothing is read at import time. Variables (all
optional):

* ``ATS_MODELS_DIR`` — model artifacts (default ``.ats/models``);
* ``ATS_OPTUNA_DATABASE`` — the database holding Optuna studies on the platform's server
  (default ``ats_optuna``; created when missing); ``ATS_OPTUNA_URL`` — a full SQLAlchemy URL
  instead (``postgresql+psycopg2://…``);
* ``ATS_TRAINING_TRIALS`` (30), ``ATS_TRAINING_TIMEOUT_S`` (1800), ``ATS_TRAINING_THREADS``
  (half the cores, at least 1), ``ATS_TRAINING_TUNE_ROWS`` (300000; ``all`` for no cap);
* ``ATS_TRAINING_BACKEND`` — ``local`` (default) or ``dask`` (final fit on a Dask cluster at
  ``ATS_DASK_SCHEDULER``; see ``ats_pipelines/training/README.md``);
* ``ATS_TRAINING_EXECUTOR`` — Dagster executor of the training job: ``in_process`` (default),
  ``multiprocess``, or ``module:attribute`` of an executor definition (e.g.
  ``dagster_k8s:k8s_job_executor``);
* ``ATS_RETRAIN_STALE_AFTER_S`` (900) — a claim without heartbeat for this long is reclaimed;
  ``ATS_RETRAIN_MAX_ATTEMPTS`` (3); ``ATS_RETRAIN_CLAIMS_PER_TICK`` (1);
* the default model scope: ``ATS_FEATURE_SERVICE`` (``signals_v1``), ``ATS_TRAINING_TIMEFRAME``
  (``1m``), ``ATS_TRAINING_LOOKBACK_DAYS`` (90), the label set ``ATS_LABEL_SET``
  (``labels_1m``) and its barriers ``ATS_LABEL_HORIZON`` (bars, 15), ``ATS_LABEL_RISK`` (the
  stop, 0.002) and ``ATS_LABEL_REWARD`` (take-profit in multiples of the stop, 2.0) — the
  features build's label spec, checked against the label files —, ``ATS_MOMENTUM_FEATURE``
  (``ret_15``, the momentum baseline's input) and ``ATS_VOLATILITY_FEATURE`` (``natr_14``);
  exchange and symbols come from the universe (``ATS_EXCHANGE``, ``ATS_SYMBOLS``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ats_pipelines.config import ConfigError, load_settings
from ats_pipelines.training.labels import Barriers
from ats_pipelines.universe import Universe, load_universe

BACKENDS = ("local", "dask")
DEFAULT_FEATURE_SERVICE = "signals_v1"
DEFAULT_MOMENTUM_FEATURE = "ret_15"
DEFAULT_VOLATILITY_FEATURE = "natr_14"
DEFAULT_LABEL_SET = "labels_1m"


@dataclass(frozen=True)
class ModelScope:
    """What one model is trained on and predicts: the unit of the queue and the registry."""

    name: str = "default"
    feature_service: str = DEFAULT_FEATURE_SERVICE
    exchange: str = "binance"
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    timeframe: str = "1m"
    lookback: timedelta = timedelta(days=90)
    label_set: str = DEFAULT_LABEL_SET  # lake dataset labels/<label_set>
    barriers: Barriers = field(default_factory=lambda: Barriers(horizon=15, risk=0.002, reward=2.0))
    momentum_feature: str = DEFAULT_MOMENTUM_FEATURE
    volatility_feature: str | None = DEFAULT_VOLATILITY_FEATURE  # market-regime tag
    # "feast", or "synthetic:planted" / "synthetic:noise": a named stand-in (demo, smoke
    # tests) whose rows come from ats_pipelines.training.synthetic, never market data
    source: str = "feast"


@dataclass(frozen=True)
class TrainingSettings:
    models_dir: Path
    reports_dir: Path
    optuna_url: str
    optuna_database: str | None  # created when missing (None: an external ATS_OPTUNA_URL)
    n_trials: int = 30
    timeout_s: float | None = 1800.0
    num_threads: int = 1
    tune_max_rows: int | None = 300_000
    backend: str = "local"
    dask_scheduler: str | None = None
    executor: str = "in_process"
    stale_after: timedelta = timedelta(minutes=15)
    max_attempts: int = 3
    claims_per_tick: int = 1
    scopes: Mapping[str, ModelScope] = field(default_factory=dict)

    def scope(self, name: str) -> ModelScope:
        try:
            return self.scopes[name]
        except KeyError:
            raise ConfigError(
                f"unknown model scope {name!r}; configured: "
                f"{', '.join(sorted(self.scopes)) or 'none'}"
            ) from None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    return value


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL with the psycopg2 driver SQLAlchemy (Optuna) should use."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def load_training_settings(
    environ: Mapping[str, str] | None = None, universe: Universe | None = None
) -> TrainingSettings:
    env = os.environ if environ is None else environ
    base = load_settings(env)
    market = universe or load_universe(env)
    backend = env.get("ATS_TRAINING_BACKEND") or "local"
    if backend not in BACKENDS:
        raise ConfigError(f"ATS_TRAINING_BACKEND={backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "dask" and not env.get("ATS_DASK_SCHEDULER"):
        raise ConfigError("ATS_TRAINING_BACKEND=dask needs ATS_DASK_SCHEDULER (tcp://host:8786)")
    external = env.get("ATS_OPTUNA_URL") or None
    database = None if external else (env.get("ATS_OPTUNA_DATABASE") or "ats_optuna")
    tune = env.get("ATS_TRAINING_TUNE_ROWS") or "300000"
    try:
        barriers = Barriers(
            horizon=_int(env, "ATS_LABEL_HORIZON", 15),
            risk=_float(env, "ATS_LABEL_RISK", 0.002),
            reward=_float(env, "ATS_LABEL_REWARD", 2.0),
        )
    except ValueError as exc:
        raise ConfigError(f"label barriers: {exc}") from None
    scope = ModelScope(
        feature_service=env.get("ATS_FEATURE_SERVICE") or DEFAULT_FEATURE_SERVICE,
        exchange=market.exchange,
        symbols=market.symbols,
        timeframe=env.get("ATS_TRAINING_TIMEFRAME") or "1m",
        lookback=timedelta(days=_int(env, "ATS_TRAINING_LOOKBACK_DAYS", 90)),
        label_set=env.get("ATS_LABEL_SET") or DEFAULT_LABEL_SET,
        barriers=barriers,
        momentum_feature=env.get("ATS_MOMENTUM_FEATURE") or DEFAULT_MOMENTUM_FEATURE,
        volatility_feature=env.get("ATS_VOLATILITY_FEATURE") or DEFAULT_VOLATILITY_FEATURE,
    )
    timeout = env.get("ATS_TRAINING_TIMEOUT_S") or "1800"
    return TrainingSettings(
        models_dir=Path(env.get("ATS_MODELS_DIR") or base.state_dir / "models"),
        reports_dir=base.reports_dir,
        optuna_url=sqlalchemy_url(external or base.database_url_for(database or "")),
        optuna_database=database,
        n_trials=_int(env, "ATS_TRAINING_TRIALS", 30),
        timeout_s=None
        if timeout in ("0", "none")
        else _float(env, "ATS_TRAINING_TIMEOUT_S", 1800.0),
        num_threads=_int(env, "ATS_TRAINING_THREADS", default_threads()),
        tune_max_rows=None
        if tune == "all"
        else _int(env, "ATS_TRAINING_TUNE_ROWS", 300_000, minimum=1000),
        backend=backend,
        dask_scheduler=env.get("ATS_DASK_SCHEDULER") or None,
        executor=env.get("ATS_TRAINING_EXECUTOR") or "in_process",
        stale_after=timedelta(seconds=_int(env, "ATS_RETRAIN_STALE_AFTER_S", 900)),
        max_attempts=_int(env, "ATS_RETRAIN_MAX_ATTEMPTS", 3),
        claims_per_tick=_int(env, "ATS_RETRAIN_CLAIMS_PER_TICK", 1),
        scopes={scope.name: scope},
    )
