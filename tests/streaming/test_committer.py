"""The lane thread and the runtime settings the service streams under: a LaneThread commits
from its own thread and reports commits on the caller's loop; a full lane holds the producer
back; settings changed for streaming are given back when it stops."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from ats_pipelines.db.connect import connection
from ats_pipelines.streaming.committer import LaneThread
from ats_pipelines.streaming.metrics import BUCKETS, StreamMetrics
from ats_pipelines.streaming.rows import candles_table
from ats_pipelines.streaming.runtime import GcPacer, freeze_heap, latency_tuning
from ats_pipelines.streaming.spill import Batch
from ats_pipelines.streaming.writer import Lane

MINUTE = 60_000
T0 = 1_714_564_800_000


def _candles(exchange: str, first: int, n: int) -> Batch:
    values = [
        {
            "ts": T0 + i * MINUTE,
            "open": 10.0,
            "high": 12.0,
            "low": 9.0,
            "close": 11.0,
            "volume": 5.0,
            "quote_volume": 52.5,
            "trade_count": 3,
            "vwap": 10.5,
            "taker_buy_volume": 2.0,
        }
        for i in range(first, first + n)
    ]
    return Batch(
        "market.candles", candles_table(exchange, "BTC/USDT", ["1m"] * n, values, "stream")
    )


async def test_lane_thread_commits_off_the_callers_loop(db_url: str, tmp_path: Path) -> None:
    exchange = f"lt{uuid.uuid4().hex[:8]}"
    seen: list[tuple[int, int, float]] = []  # (thread of the callback, rows, commit time)
    writer_threads: set[int] = set()

    def on_commit(batches: list[Batch], committed: float) -> None:
        seen.append((threading.get_ident(), sum(b.rows for b in batches), committed))

    lane = Lane(
        "bars",
        db_url,
        spill_dir=tmp_path / "spill",
        metrics=StreamMetrics("t"),
        queue_items=4,
        max_pending_rows=100,
        buffer_rows=100,
        on_commit=on_commit,
    )
    original = lane._write

    async def spy(batches: list[Batch]) -> None:
        writer_threads.add(threading.get_ident())
        await original(batches)

    lane._write = spy  # type: ignore[method-assign]
    threaded = LaneThread(lane, max_in_flight=2)
    await threaded.open()
    threaded.start()
    for i in range(10):
        await threaded.put(_candles(exchange, i * 3, 3))
    assert await threaded.wait_idle(30)
    await asyncio.sleep(0.05)  # commit callbacks hop back to this loop
    assert threaded.quiet
    await threaded.close(10)

    me = threading.get_ident()
    assert writer_threads and me not in writer_threads  # the writes ran in the lane's thread
    assert {t for t, _, _ in seen} == {me}  # callbacks ran here, on the caller's loop
    assert sum(n for _, n, _ in seen) == 30
    async with connection(db_url) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM market.candles WHERE exchange = $1", exchange
        )
    assert stored == 30
    assert threaded.stats()["committed_rows"] == 30


async def test_a_full_lane_thread_holds_the_producer_back(db_url: str, tmp_path: Path) -> None:
    exchange = f"lt{uuid.uuid4().hex[:8]}"
    lane = Lane(
        "bulk",
        db_url,
        spill_dir=tmp_path / "spill",
        metrics=StreamMetrics("t"),
        queue_items=1,
        max_pending_rows=1,
        buffer_rows=10,
    )
    threaded = LaneThread(lane, max_in_flight=2)
    await threaded.open()
    threaded.start()
    async with connection(db_url) as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE market.candles IN ACCESS EXCLUSIVE MODE")

        async def produce() -> None:
            for i in range(8):
                await threaded.put(_candles(exchange, i, 1))

        producer = asyncio.create_task(produce())
        await asyncio.sleep(1.0)
        assert not producer.done()  # waiting: queue, pending and hand-offs are all full
        assert threaded.stats()["in_flight"] <= 2
        await tx.rollback()
    await asyncio.wait_for(producer, 30)
    assert await threaded.wait_idle(30)
    await threaded.close(10)
    async with connection(db_url) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM market.candles WHERE exchange = $1", exchange
        )
    assert stored == 8


async def test_streaming_settings_are_given_back() -> None:
    interval, enabled = sys.getswitchinterval(), gc.isenabled()
    pacer = GcPacer(young_s=0.01, middle_every=3, full_s=0.05)
    with latency_tuning():
        assert sys.getswitchinterval() < interval
        freeze_heap()
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        task = asyncio.create_task(pacer.run())
        await asyncio.sleep(0.3)
        task.cancel()
    assert sys.getswitchinterval() == interval and gc.isenabled() == enabled
    assert gc.get_freeze_count() == 0
    stats: dict[str, Any] = pacer.stats()
    assert stats["passes"][0] > 0 and stats["passes"][1] > 0 and stats["passes"][2] > 0


def _histogram(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        if metric.name != name:
            continue
        for sample in metric.samples:
            if sample.labels.get("hop", "exchange_to_received") != "exchange_to_received":
                continue
            if sample.name.endswith("_created"):
                continue
            out[sample.name.removeprefix(name) + sample.labels.get("le", "")] = sample.value
    return out


def test_bulk_receive_latencies_match_one_by_one_observations() -> None:
    values = [*np.random.default_rng(7).exponential(0.02, 5_000).tolist(), 0.0005, 400.0]
    metrics = StreamMetrics("t")
    batches = [values[i : i + 37] for i in range(0, len(values), 37)]
    batches += [values[:3], [], values[-2:]]  # below the bulk path's size, and empty
    for batch in batches:
        metrics.receive_latencies(batch)
    registry = CollectorRegistry()
    reference = Histogram("h", "h", buckets=BUCKETS, registry=registry)
    for batch in batches:
        for value in batch:
            reference.observe(value)

    got = _histogram(metrics.registry, "ats_stream_latency_seconds")
    want = _histogram(registry, "h")
    assert got.keys() == want.keys() and len(got) == len(BUCKETS) + 3  # +Inf, count, sum
    for key, value in want.items():
        if key == "_sum":
            assert abs(got[key] - value) < 1e-6
        else:
            assert got[key] == value, key
    assert metrics.recent["exchange_to_received"].count == sum(len(b) for b in batches)


def test_metrics_stay_in_process_after_feast_is_imported() -> None:
    import subprocess
    import sys as _sys

    code = (
        "import ats_pipelines, feast, prometheus_client.values as v, os;"
        "from ats_pipelines.streaming.metrics import StreamMetrics;"
        "a, b = StreamMetrics('a'), StreamMetrics('b'); a.receive_latencies([1.0] * 10);"
        "n = [s.value for m in b.registry.collect() for s in m.samples"
        " if s.name.endswith('_count') and s.labels.get('hop') == 'exchange_to_received'];"
        "print(v.ValueClass.__name__, n)"
    )
    env = {**__import__("os").environ, "PROMETHEUS_MULTIPROCESS_DIR": "/tmp/feast_metrics_x1"}
    out = subprocess.run(
        [_sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert out == "MutexValue [0.0]", out  # b saw nothing of a's observations
