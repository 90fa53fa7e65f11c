"""Where the final fit runs: this process (``local``) or a Dask cluster (``dask``).

``ATS_TRAINING_BACKEND=dask`` with ``ATS_DASK_SCHEDULER=tcp://host:8786`` fits the final model
with LightGBM's Dask interface (``lightgbm.DaskLGBMClassifier``): the training window is split
into partitions spread over the workers, which train one model together (LightGBM's
data-parallel socket network). Tuning stays local on at most ``ATS_TRAINING_TUNE_ROWS`` rows; to
tune faster, run more Dagster runs of the same scope's study (the study lives in PostgreSQL).

The Dask path needs ``dask[dataframe]``, ``distributed`` and ``scikit-learn`` (project
dependencies; an image built without them gets a clear message naming them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import lightgbm as lgb

from ats_pipelines.training.dataset import TrainingSet

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The configured training backend cannot run here (the message names what is missing)."""


def dask_final_fit(
    scheduler: str, partitions_per_worker: int = 2, max_bin: int | None = None
) -> Callable[[dict[str, Any], TrainingSet, int], lgb.Booster]:
    """A final-fit function training on the Dask cluster at ``scheduler``: the training window
    in ``partitions_per_worker`` partitions per worker, each worker fitting with its own
    threads (LightGBM's data-parallel mode over its socket network)."""
    try:
        import dask.dataframe as dd
        from distributed import Client, wait
        from lightgbm import DaskLGBMClassifier
    except ImportError as exc:
        raise BackendUnavailable(
            "ATS_TRAINING_BACKEND=dask needs the packages dask[dataframe], distributed and "
            f"scikit-learn in this environment ({exc}); install them or use "
            "ATS_TRAINING_BACKEND=local"
        ) from exc

    def fit(params: dict[str, Any], data: TrainingSet, rounds: int) -> lgb.Booster:
        # the estimator derives classes from the labels and threads from each worker
        local = {k: v for k, v in params.items() if k not in ("num_threads", "metric", "num_class")}
        if max_bin is not None:
            local["max_bin"] = max_bin
        with Client(scheduler) as client:
            # distributed's signatures cover its async mode too; this client is synchronous
            threads = cast(dict[str, int], client.nthreads())
            if not threads:
                raise BackendUnavailable(f"the Dask cluster at {scheduler} has no workers")
            # features and label in one frame, so their partitions line up row for row
            frame = data.X.astype("float32").assign(_label=data.y.astype("int32"))
            parts = dd.from_pandas(frame, npartitions=partitions_per_worker * len(threads))
            parts = cast(dd.DataFrame, client.persist(parts))
            wait(parts)
            placed = cast(dict[str, list[str]], client.who_has(parts))
            holders = {w for ws in placed.values() for w in ws}
            # each worker trains with its own thread count (LightGBM's Dask interface sets it)
            model = DaskLGBMClassifier(client=client, n_estimators=rounds, **local)
            model.fit(parts.drop(columns="_label"), parts["_label"])
            log.info(
                "event=dask_final_fit scheduler=%s workers=%d workers_with_data=%d "
                "partitions=%d rows=%d rounds=%d",
                scheduler,
                len(threads),
                len(holders),
                parts.npartitions,
                len(data),
                rounds,
            )
            return model.booster_

    return fit


def final_fit_for(
    backend: str, scheduler: str | None, max_bin: int | None = None
) -> Callable[[dict[str, Any], TrainingSet, int], lgb.Booster] | None:
    """None for the local backend (the trainer fits on its own binned dataset); ``max_bin``
    is the trainer's, so both backends bin features alike."""
    if backend == "local":
        return None
    if backend == "dask":
        if not scheduler:
            raise BackendUnavailable("the dask backend needs ATS_DASK_SCHEDULER")
        return dask_final_fit(scheduler, max_bin=max_bin)
    raise BackendUnavailable(f"unknown training backend {backend!r}; use local or dask")
