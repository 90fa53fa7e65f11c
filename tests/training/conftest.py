"""Fixtures of the training tests: one migrated database of their own (the queue's claim order
must not see other suites' rows), emptied before each test that asks for it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterator

import optuna
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate


def run_sync(coro):
    """Run a coroutine to completion from sync or async code (a worker thread has no loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def training_db(make_database) -> str:
    url = make_database("ats_training")

    async def body() -> None:
        async with connection(url) as conn:
            await migrate(conn)

    run_sync(body())
    return url


async def _empty(url: str) -> None:
    async with connection(url) as conn:
        await conn.execute("TRUNCATE ml.retrain_queue, ml.models, signals.signals CASCADE")


@pytest.fixture
def clean_db(training_db: str) -> Iterator[str]:
    """The training database with an empty queue, registry and signals table."""
    run_sync(_empty(training_db))
    yield training_db


@pytest.fixture(autouse=True, scope="session")
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(logging.WARNING)
