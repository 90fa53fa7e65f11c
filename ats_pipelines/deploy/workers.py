"""Worker pools of the scale-out engines on this machine: Celery workers for the fan-out
backfill and a Dask ``LocalCluster`` for the distributed final fit (tests, benchmarks, and a
single-machine trial of a cluster configuration)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from distributed import LocalCluster


@contextmanager
def dask_cluster(workers: int) -> Iterator[LocalCluster]:
    """``workers`` worker processes with one thread each, over TCP on loopback."""
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=":0",
    )
    try:
        yield cluster
    finally:
        cluster.close()


@contextmanager
def celery_workers(
    env: dict[str, str], names: list[str], workdir: Path, ready_timeout_s: float = 180
) -> Iterator[list[Path]]:
    """``dagster-celery`` workers (one task at a time each) on ``ATS_CELERY_BROKER_URL``,
    running in ``workdir`` (not the checkout, whose .env Dagster's CLI would load over
    ``env``); yields their log files once every one is ready, stops them on exit."""
    broker = env["ATS_CELERY_BROKER_URL"]
    config = workdir / "celery.yaml"
    config.write_text(
        yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": broker}}})
    )
    exe = str(Path(sys.executable).with_name("dagster-celery"))
    start = [exe, "worker", "start", "-A", "dagster_celery.app", "-y", str(config)]
    logs = [workdir / f"{name}.log" for name in names]
    procs = []
    for name, log in zip(names, logs, strict=True):
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [*start, "-n", name, "--", "--concurrency=1"],
                    env=env,
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not all(b"ready." in log.read_bytes() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                tails = [log.read_text(errors="replace")[-1500:] for log in logs]
                raise RuntimeError(f"celery workers did not become ready: {tails}")
            time.sleep(0.5)
        yield logs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
