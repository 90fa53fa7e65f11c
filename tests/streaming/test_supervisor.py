"""The supervisor on its own: every exception kind restarts the task with backoff (counted,
logged once), a configuration error ends it, a stall is restarted only while the task should
produce, and the injection seam raises inside the task at its next beat."""

from __future__ import annotations

import asyncio
import logging
import random

import ccxt
import pytest

from ats_pipelines.config import ConfigError
from ats_pipelines.emulator.testing import wait_until
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.supervisor import Backoff, FailureMetrics, Supervisor

FAST = Backoff(base_s=0.001, max_s=0.01, healthy_s=60.0)
ERRORS = [
    ConnectionError("Cannot Send Message: Connection closed before send"),
    OSError("socket gone"),
    TimeoutError(),
    ccxt.NetworkError("binance GET https://... 502"),
    ccxt.ExchangeError("binance unexpected answer"),
    ValueError("could not convert string to float: 'abc'"),
    KeyError("p"),
]


def failures(metrics: FailureMetrics, kind: str, error: str) -> float:
    return metrics.task_failures.labels(task=kind, error=error)._value.get()


def make(fatal: list[tuple[BaseException, str]] | None = None) -> Supervisor:
    sink = fatal if fatal is not None else []
    return Supervisor(
        StreamMetrics("test"),
        fatal=lambda exc, name: sink.append((exc, name)),
        backoff=FAST,
        rng=random.Random(1),
    )


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
async def test_any_exception_restarts_the_task_counted_and_logged_once(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    sup = make()
    runs: list[int] = []
    restarted: list[int] = []

    async def task() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise error
        await asyncio.Event().wait()  # the third run keeps going

    caplog.set_level(logging.ERROR)
    handle = sup.start("trades-BTC/USDT", "trades", task, on_restart=lambda: restarted.append(1))
    await wait_until(lambda: len(runs) == 3, "two restarts", 10)
    assert not handle.done() and len(restarted) == 2
    assert failures(sup.metrics, "trades", type(error).__name__) == 2
    lines = [r.getMessage() for r in caplog.records if "stream_task_failed" in r.getMessage()]
    assert len(lines) == 2 and all("task=trades-BTC/USDT" in line for line in lines)
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle


async def test_a_configuration_error_ends_the_task_and_is_reported() -> None:
    fatal: list[tuple[BaseException, str]] = []
    sup = make(fatal)
    runs: list[int] = []

    async def task() -> None:
        runs.append(1)
        raise ConfigError("symbols: FOO/BAR is not a market")

    await sup.start("tick", "tick", task)
    assert len(runs) == 1 and [name for _, name in fatal] == ["tick"]


def test_backoff_grows_exponentially_within_the_jitter_band() -> None:
    backoff, rng = Backoff(base_s=1.0, max_s=8.0, jitter=0.5), random.Random(3)
    delays = [backoff.delay_s(n, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


async def test_a_stalled_task_is_restarted_only_while_it_should_produce() -> None:
    sup = make()
    should_produce = {"yes": False}
    runs: list[int] = []

    async def hangs() -> None:
        runs.append(1)
        sup.beat("book-ETH/USDT")
        await asyncio.Event().wait()  # stops producing

    async def active() -> bool:
        return should_produce["yes"]

    handle = sup.start("book-ETH/USDT", "book", hangs, stall_s=0.05, active=active)
    watchdog = asyncio.create_task(sup.watch(0.01))
    await asyncio.sleep(0.3)  # silent, but its market is quiet: left alone
    assert len(runs) == 1
    should_produce["yes"] = True
    await wait_until(lambda: len(runs) >= 2, "a restart of the stalled task", 10)
    assert failures(sup.metrics, "book", "TaskStalled") >= 1
    for t in (handle, watchdog):
        t.cancel()
    await asyncio.gather(handle, watchdog, return_exceptions=True)


async def test_an_injected_exception_is_raised_inside_the_task_at_its_next_beat() -> None:
    sup = make()
    seen: list[str] = []

    async def loop() -> None:
        while True:
            try:
                sup.beat("heartbeat")
            except ValueError as exc:  # only to observe where it surfaced; re-raised
                seen.append(str(exc))
                raise
            await asyncio.sleep(0.001)

    handle = sup.start("heartbeat", "heartbeat", loop)
    sup.inject("heartbeat", ValueError("injected"))
    await wait_until(lambda: seen == ["injected"], "the injected error inside the task", 10)
    await wait_until(lambda: sup.tasks["heartbeat"].restarts == 1, "its restart", 10)
    assert sup.pending_injections() == 0 and not handle.done()
    handle.cancel()
    await asyncio.gather(handle, return_exceptions=True)
