"""Where the final fit runs: this process (``local``) or a Dask cluster (``dask``).

``ATS_TRAINING_BACKEND=dask`` with ``ATS_DASK_SCHEDULER=tcp://host:8786`` fits the final model
with LightGBM's Dask interface (``lightgbm.DaskLGBMClassifier``): the training window is split
into partitions spread over the workers, which train one model together (LightGBM's
data-parallel socket network). Tuning stays local on at most ``ATS_TRAINING_TUNE_ROWS`` rows; to
tune faster, run more Dagster runs of the same scope's study (the study lives in PostgreSQL).

The Dask path needs ``dask[dataframe]``, ``distributed`` and ``scikit-learn``, which this
project does not install; :func:`final_fit` says so clearly when they are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb

from ats_pipelines.training.dataset import TrainingSet


class BackendUnavailable(RuntimeError):
    """The configured training backend cannot run here (the message names what is missing)."""


def dask_final_fit(
    scheduler: str, partitions: int = 8
) -> Callable[[dict[str, Any], TrainingSet, int], lgb.Booster]:
    """A final-fit function training on the Dask cluster at ``scheduler``."""
    try:
        import dask.dataframe as dd
        from distributed import Client  # pyright: ignore[reportMissingImports]
        from lightgbm import DaskLGBMClassifier
    except ImportError as exc:
        raise BackendUnavailable(
            "ATS_TRAINING_BACKEND=dask needs the packages dask[dataframe], distributed and "
            f"scikit-learn in this environment ({exc}); install them or use "
            "ATS_TRAINING_BACKEND=local"
        ) from exc

    def fit(params: dict[str, Any], data: TrainingSet, rounds: int) -> lgb.Booster:
        local = {k: v for k, v in params.items() if k not in ("num_threads", "metric")}
        with Client(scheduler) as client:
            X = dd.from_pandas(data.X.astype("float32"), npartitions=partitions)
            y = dd.from_array(
                data.y.astype("int32"), chunksize=X.npartitions and max(1, len(data) // partitions)
            )
            model = DaskLGBMClassifier(client=client, n_estimators=rounds, **local)
            model.fit(X, y)
            return model.booster_

    return fit


def final_fit_for(
    backend: str, scheduler: str | None
) -> Callable[[dict[str, Any], TrainingSet, int], lgb.Booster] | None:
    """None for the local backend (the trainer fits on its own binned dataset)."""
    if backend == "local":
        return None
    if backend == "dask":
        if not scheduler:
            raise BackendUnavailable("the dask backend needs ATS_DASK_SCHEDULER")
        return dask_final_fit(scheduler)
    raise BackendUnavailable(f"unknown training backend {backend!r}; use local or dask")
