"""A multi-partition candle backfill on the distributed executor: Celery workers in two
separate processes, brokered by the project's Redis, each take steps of one Dagster run;
every partition is written and materialised exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
import redis
import yaml

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.defs.market_data.fanout import JOB
from ats_pipelines.deploy.workers import celery_workers
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from tests.conftest import run_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAYS = ("2024-04-20", "2024-04-21")
SYMBOLS = ("BTC/USDT", "ETH/USDT")
KEYS = [f"{day}|{symbol}" for day in DAYS for symbol in SYMBOLS]


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


def _psycopg2(url: str) -> str:
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


async def _migrated(url: str) -> None:
    async with connection(url) as conn:
        await migrate(conn)


@pytest.fixture
def celery_env(make_database, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of the workers and the run: a fresh platform database and Dagster storage,
    the emulator, and a Celery broker on a Redis database of its own (emptied first)."""
    platform, storage = make_database("ats_fanout"), make_database("ats_fanout_dagster")
    run_sync(_migrated(platform))
    broker = _redis_db(redis_url, 7)
    redis.Redis.from_url(broker).flushdb()
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url:\n      env: ATS_DAGSTER_PG_URL\n"
        "telemetry:\n  enabled: false\n"
    )
    with emulator_in_thread(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emu:
        yield {
            "DAGSTER_HOME": str(home),
            "ATS_DAGSTER_PG_URL": _psycopg2(storage),
            "ATS_DATABASE_URL": platform,
            "ATS_EXCHANGE_URL": emu.rest_url,
            "ATS_SYMBOLS": ",".join(SYMBOLS),
            "ATS_MARKET_DATA_START": "2024-04-19",
            "ATS_BACKFILL_EXECUTOR": "celery",
            "ATS_CELERY_BROKER_URL": broker,
            "DAGSTER_TELEMETRY_DISABLED": "1",
        }


@pytest.fixture
def workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[list[Path]]:
    """Two `dagster-celery` workers, one task at a time each, ready before the run starts."""
    with celery_workers({**os.environ, **celery_env}, ["w1", "w2"], tmp_path) as logs:
        yield logs


def test_fanout_backfill_runs_each_partition_once_across_two_workers(
    celery_env: dict[str, str], workers: list[Path], tmp_path: Path, monkeypatch
) -> None:
    run_config = tmp_path / "run.yaml"
    run_config.write_text(
        yaml.safe_dump({"ops": {"plan_candle_partitions": {"config": {"partition_keys": KEYS}}}})
    )
    dagster = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run(
        [
            dagster,
            "job",
            "execute",
            "-m",
            "ats_pipelines.definitions",
            "-j",
            JOB,
            "-c",
            str(run_config),
        ],
        env={**os.environ, **celery_env},
        cwd=tmp_path,  # not the checkout: Dagster's CLI loads its .env over the environment
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    for key, value in celery_env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    materialised = [
        e.dagster_event.step_materialization_data.materialization
        for e in events
        if e.dagster_event is not None
    ]
    assert Counter(m.partition for m in materialised) == Counter(KEYS)  # each exactly once
    workers_used = {str(m.metadata["worker"].value) for m in materialised}
    assert len(workers_used) >= 2  # steps ran in more than one worker process
    assert not any(w.endswith(f":{os.getpid()}") for w in workers_used)

    with psycopg.connect(celery_env["ATS_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT symbol, ts::date, count(*) FROM market.candles WHERE timeframe = '1m' "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    assert {(s, str(d)): n for s, d, n in rows} == {(s, d): 1440 for d in DAYS for s in SYMBOLS}
