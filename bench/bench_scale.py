"""Benchmark: speedup from 1 to 2 workers of each scale-out engine, measured in one run.

1. Distributed final fit: LightGBM's Dask estimator on a ``distributed.LocalCluster`` of one,
   then two worker processes (one thread each), same data, parameters and rounds.
2. Parallel tuning: Optuna trials of a LightGBM objective in one process, then the same number
   of trials split over two processes sharing one PostgreSQL study.
3. Backfill on the distributed executor: ``candles_1m_fanout_job`` over the same partitions on
   one, then two ``dagster-celery`` workers (Redis broker), timed from the run's start to its
   end in Dagster's records (process start-up of the CLI excluded).

Each line prints ``ours`` (2 workers) against ``baseline`` (1 worker) and their ratio. On a
2-core machine shared with other work, the ceiling is 2x, minus what the engine itself costs:
the Dask fit synchronises histograms over sockets every tree, tuning contends for the database
only briefly, the backfill is bound by the emulator and the database more than by workers.

Sizes: ATS_BENCH_SCALE_ROWS (200000), _TRIALS (8), _PARTITIONS (days, 3; × 2 symbols).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_training.py

import asyncio
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import lightgbm as lgb
import numpy as np
import optuna
import redis
import yaml

from ats_pipelines.cache.server import ensure_redis
from ats_pipelines.config import load_settings
from ats_pipelines.defs.market_data.fanout import JOB
from ats_pipelines.deploy.workers import celery_workers, dask_cluster
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.training.backends import dask_final_fit
from ats_pipelines.training.config import sqlalchemy_url
from ats_pipelines.training.synthetic import make_training_set
from bench._common import scratch_url

ROWS = int(os.environ.get("ATS_BENCH_SCALE_ROWS", "200000"))
TRIALS = int(os.environ.get("ATS_BENCH_SCALE_TRIALS", "8"))
DAYS = int(os.environ.get("ATS_BENCH_SCALE_PARTITIONS", "3"))
PARAMS = {"objective": "multiclass", "learning_rate": 0.1, "num_leaves": 31, "verbosity": -1}


def speedup_line(name: str, one: float, two: float) -> str:
    return (
        f"{name}: ours {two:.1f} s (2 workers), baseline {one:.1f} s (1 worker), "
        f"ratio {one / two:.2f}"
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def final_fit(workers: int) -> float:
    data = make_training_set(ROWS, 20, seed=1, dtype=np.float32)
    with dask_cluster(workers) as cluster:
        fit = dask_final_fit(cluster.scheduler_address, max_bin=63)
        fit(PARAMS, data.take(np.arange(2000)), 2)  # warm the workers' imports
        return timed(lambda: fit(PARAMS, data, 100))


def _trials(storage: str, study: str, n: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = make_training_set(40_000, 20, seed=2, dtype=np.float32)
    train = lgb.Dataset(data.X.to_numpy(np.float32), label=data.y, params={"max_bin": 63})

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 0.05, 0.3)
        # lgb.train needs the class count the Dask estimator derives from the labels
        params = {**PARAMS, "num_class": 3, "num_threads": 1, "learning_rate": lr}
        booster = lgb.train(params, train, num_boost_round=60)
        return float(booster.current_iteration())

    optuna.load_study(study_name=study, storage=storage).optimize(objective, n_trials=n)


def tuning(storage: str, workers: int) -> float:
    study = f"bench-{workers}-{time.time_ns()}"
    optuna.create_study(study_name=study, storage=storage)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_trials, args=(storage, study, TRIALS // workers))
        for _ in range(workers)
    ]

    def run() -> None:
        for p in procs:
            p.start()
        for p in procs:
            p.join()

    return timed(run)


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


def backfill(env: dict[str, str], keys: list[str], workers: int, tmp: Path) -> float:
    redis.Redis.from_url(env["ATS_CELERY_BROKER_URL"]).flushdb()
    names = [f"w{workers}-{i}" for i in range(workers)]
    with celery_workers(env, names, tmp):
        run_config = tmp / "run.yaml"
        partitions = {"partition_keys": keys}
        run_config.write_text(
            yaml.safe_dump({"ops": {"plan_candle_partitions": {"config": partitions}}})
        )
        dagster = str(Path(sys.executable).with_name("dagster"))
        execute = [dagster, "job", "execute", "-m", "ats_pipelines.definitions", "-j", JOB]
        subprocess.run(
            [*execute, "-c", str(run_config)],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
    os.environ.update(env)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]  # the newest: this pass's
        stats = instance.get_run_stats(run.run_id)
    assert stats.start_time is not None and stats.end_time is not None
    return stats.end_time - stats.start_time


async def main() -> None:
    settings = load_settings({**os.environ, "ATS_ENV": "test"})
    ensure_redis(settings)
    print("== distributed final fit (LightGBM Dask estimator)", flush=True)
    one, two = final_fit(1), final_fit(2)
    print(speedup_line(f"final fit {ROWS:,} rows x 20, 100 rounds", one, two), flush=True)

    async with scratch_url("ats_bench_scale") as url:
        storage = sqlalchemy_url(url)
        one, two = tuning(storage, 1), tuning(storage, 2)
        print(speedup_line(f"tuning {TRIALS} trials, one PostgreSQL study", one, two), flush=True)

    async with (
        scratch_url("ats_bench_fanout") as url,
        scratch_url("ats_bench_dagster") as dagster_url,
    ):
        first = date(2024, 4, 30) - timedelta(days=2 * DAYS)

        def keys(offset: int) -> list[str]:
            days = [first + timedelta(days=offset + d) for d in range(DAYS)]
            return [f"{day}|{s}" for day in days for s in ("BTC/USDT", "ETH/USDT")]

        with (
            tempfile.TemporaryDirectory() as tmp_dir,
            emulator_in_thread(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emu,
        ):
            tmp = Path(tmp_dir)
            (tmp / "dagster.yaml").write_text(
                "storage:\n  postgres:\n    postgres_url:\n      env: ATS_DAGSTER_PG_URL\n"
                "telemetry:\n  enabled: false\n"
            )
            env = {
                **os.environ,
                "DAGSTER_HOME": str(tmp),
                "ATS_DAGSTER_PG_URL": sqlalchemy_url(dagster_url),
                "ATS_DATABASE_URL": url,
                "ATS_EXCHANGE_URL": emu.rest_url,
                "ATS_SYMBOLS": "BTC/USDT,ETH/USDT",
                "ATS_MARKET_DATA_START": str(first),
                "ATS_BACKFILL_EXECUTOR": "celery",
                "ATS_CELERY_BROKER_URL": _redis_db(settings.redis_url, 8),
            }
            # different days of the same size: a rewrite of stored days would be cheaper
            one = backfill(env, keys(0), 1, tmp)
            two = backfill(env, keys(DAYS), 2, tmp)
        print(
            speedup_line(f"fan-out backfill {2 * DAYS} partitions (Celery)", one, two), flush=True
        )


if __name__ == "__main__":
    asyncio.run(main())
