"""Acceptance (issue 14, "a supervised stream"): every exception kind seen in the field —
the built-in ConnectionError ccxt's websocket client raises, OSError, asyncio's timeout, ccxt's
NetworkError and ExchangeError, a parser's ValueError and KeyError — injected into every task
kind of the running service (through the supervisor's test seam, nothing of the service
replaced) while the emulator drops connections and duplicates, reorders and garbles frames:
the service keeps ingesting, and every trade and 1m/5m bar equals the emulator's."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.faults import FaultConfig
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread, wait_until
from ats_pipelines.streaming.service import StreamService

START = FIXED_START_MS + (3 * 60 + 58) * 60_000  # 15:58 exchange time
SPEED = 150.0
TIMEFRAMES = ("1m", "5m")
TASKS = (
    "trades-BTC/USDT",
    "trades-ETH/USDT",
    "book-ETH/USDT",
    "tick",
    "clock",
    "heal",
    "checkpoint",
    "heartbeat",
    "snapshots",
    "open-bars",
    "writer-bars",
    "writer-bars-intake",
    "writer-bulk",
    "writer-bulk-intake",
)


def errors() -> list[Exception]:
    return [
        ConnectionError("Cannot Send Message: Connection closed before send"),
        OSError("[Errno 104] Connection reset by peer"),
        TimeoutError(),  # asyncio.TimeoutError is this class since Python 3.11
        ccxt.NetworkError("binance GET /api/v3/trades 502 Bad Gateway"),
        ccxt.ExchangeError("binance unexpected answer"),
        ValueError("could not convert string to float: 'abc'"),
        KeyError("p"),
    ]


async def test_every_exception_in_every_task_and_the_data_stays_exact(
    make_config: Any, oracle: Any, db_url: str, redis_url: str
) -> None:
    faults = FaultConfig(
        seed=5, drop_every_s=4.0, duplicate_every=7, reorder_every=11, malformed_every=97
    )
    emu_config = EmulatorConfig(
        speed=SPEED,
        start_ms=START,
        birdeye=None,
        faults=faults,
        synthetic=SyntheticConfig(symbol_count=2),
    )
    with emulator_in_thread(emu_config) as emu:
        config = make_config(
            emu,
            timeframes=TIMEFRAMES,
            grace_ms=5_000,
            redis_url=redis_url,
            clock_sync_s=0.5,
            checkpoint_interval_s=0.5,
            heartbeat_interval_s=0.5,
            restart_base_s=0.05,
            restart_max_s=0.5,
        )
        service = StreamService(config)
        run = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        sup = service.supervisor
        await wait_until(lambda: all(t in sup.tasks for t in TASKS), "every task started", 30)
        for task in TASKS:
            for exc in errors():
                sup.inject(task, exc)
        await wait_until(lambda: sup.pending_injections() == 0, "every injection raised", 120)
        applied = sum(p.counts["applied"] for p in service.pipelines.values())
        until = emu.clock.now_ms() + 8 * 60_000
        await wait_until(lambda: emu.clock.now_ms() >= until, "eight more exchange minutes", 60)
        assert sum(p.counts["applied"] for p in service.pipelines.values()) > applied + 500
        passes = service.heal_passes
        await wait_until(lambda: service.heal_passes >= passes + 2, "two heal passes", 30)
        service.request_stop("test over")
        summary = await asyncio.wait_for(run, 60)

    assert summary["stop_reason"] == "test over" and service.error is None
    assert emu.faults.counts["ws_dropped"] >= 2 and emu.faults.counts["malformed"] > 0
    for task in TASKS:
        assert sup.tasks[task].restarts >= len(errors()), task
    kinds = {sup.tasks[t].kind for t in TASKS}
    for kind in kinds:
        for exc in errors():
            counted = service.metrics.task_failures.labels(task=kind, error=type(exc).__name__)
            assert counted._value.get() >= 1, (kind, type(exc).__name__)
    async with connection(db_url) as conn:
        compared = await oracle.exact(conn, emu, service, TIMEFRAMES)
    assert compared["trades"] > 2_000 and compared["bars"] >= 10
