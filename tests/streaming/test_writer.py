"""The writer lanes against the real database: back-pressure while it is slow, buffering then
spilling while it is away (the connection cut by a proxy), replay in order when it returns,
refused rows to quarantine, and a stop that spills instead of losing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from ats_pipelines.db.connect import connection
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.rows import candles_table
from ats_pipelines.streaming.spill import Batch, SpillStore
from ats_pipelines.streaming.state import state_batch
from ats_pipelines.streaming.writer import REJECTED_RULE, Lane

MINUTE = 60_000
T0 = 1_714_564_800_000


def _bar(i: int, **changes: float) -> dict[str, Any]:
    bar = {
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
    return {**bar, **changes}


def _candles(exchange: str, first: int, n: int) -> Batch:
    values = [_bar(i) for i in range(first, first + n)]
    return Batch(
        "market.candles", candles_table(exchange, "BTC/USDT", ["1m"] * n, values, "stream")
    )


def _lane(url: str, tmp_path: Path, **kwargs: Any) -> Lane:
    args: dict[str, Any] = dict(
        spill_dir=tmp_path / "spill",
        metrics=StreamMetrics("t"),
        queue_items=2,
        max_pending_rows=10,
        buffer_rows=10,
        retry_base_s=0.05,
        retry_max_s=0.2,
    )
    args.update(kwargs)
    return Lane("bars", url, **args)


async def _count(url: str, exchange: str) -> int:
    async with connection(url) as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM market.candles WHERE exchange = $1", exchange
        )
        return int(count or 0)


async def test_a_slow_database_holds_producers_back(db_url: str, tmp_path: Path) -> None:
    exchange = f"w{uuid.uuid4().hex[:8]}"
    lane = _lane(db_url, tmp_path)
    lane.start()
    async with connection(db_url) as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE market.candles IN ACCESS EXCLUSIVE MODE")

        async def produce() -> None:
            for i in range(20):
                await lane.put(_candles(exchange, i * 5, 5))

        producer = asyncio.create_task(produce())
        await asyncio.sleep(1.0)
        # memory stays bounded: pending <= max_pending_rows + one batch, queue full, producer
        # waiting, nothing spilled (the database is there, only slow)
        assert not producer.done()
        assert lane.pending_rows <= 10 + 5 and lane.queue.qsize() <= 2
        assert not lane.spill and lane.healthy
        await tx.rollback()
    await asyncio.wait_for(producer, 30)
    assert await lane.wait_idle(30)
    await lane.close(10)
    assert await _count(db_url, exchange) == 100


async def test_database_away_buffers_spills_and_replays_in_order(
    db_proxy: Any, db_url: str, tmp_path: Path
) -> None:
    proxy, url = db_proxy
    exchange = f"w{uuid.uuid4().hex[:8]}"
    lane = _lane(url, tmp_path)
    lane.start()
    await lane.put(_candles(exchange, 0, 5))
    assert await lane.wait_idle(30)
    proxy.cut()
    # while it is away the producer never waits: 40 batches, 4 rows each, memory holds 10 rows
    for i in range(40):
        await asyncio.wait_for(lane.put(_candles(exchange, 5 + i * 4, 4)), 5)
        # the same state key written over and over: only order makes the last one win
        await asyncio.wait_for(lane.put(state_batch(exchange, "BTC/USDT", "t", {"n": i}, None)), 5)
    await asyncio.sleep(0.5)
    assert not lane.healthy
    assert lane.spill and lane.spill.rows > 0 and lane.pending_rows <= 10
    assert await _count(db_url, exchange) == 5
    proxy.restore()
    assert await lane.wait_idle(60)
    await lane.close(10)
    assert not lane.spill and not list((tmp_path / "spill").glob("*.arrow"))
    assert await _count(db_url, exchange) == 5 + 160
    async with connection(db_url) as conn:
        state = await conn.fetchval(
            "SELECT state::text FROM ops.stream_state WHERE exchange = $1", exchange
        )
    assert json.loads(str(state)) == {"n": 39}


async def test_stop_while_away_spills_and_the_next_start_replays(
    db_proxy: Any, db_url: str, tmp_path: Path
) -> None:
    proxy, url = db_proxy
    exchange = f"w{uuid.uuid4().hex[:8]}"
    proxy.cut()
    lane = _lane(url, tmp_path, buffer_rows=1_000)
    lane.start()
    for i in range(6):
        await lane.put(_candles(exchange, i * 3, 3))
    await asyncio.sleep(0.3)
    await lane.close(0.5)  # the database is still away: everything goes to disk
    assert len(SpillStore(tmp_path / "spill")) == 6
    proxy.restore()
    again = _lane(url, tmp_path)
    again.start()
    assert await again.wait_idle(30)
    await again.close(10)
    assert await _count(db_url, exchange) == 18


async def test_rows_the_database_refuses_go_to_quarantine(db_url: str, tmp_path: Path) -> None:
    exchange = f"w{uuid.uuid4().hex[:8]}"
    lane = _lane(db_url, tmp_path)
    lane.start()
    good = _candles(exchange, 0, 3)
    bad_values = [_bar(10, high=1.0)]  # high below low: the candles CHECK refuses it
    bad = Batch("market.candles", candles_table(exchange, "BTC/USDT", ["1m"], bad_values, "stream"))
    later = _candles(exchange, 20, 2)
    for batch in (good, bad, later):
        await lane.put(batch)
    assert await lane.wait_idle(30)
    await lane.close(10)
    assert await _count(db_url, exchange) == 5
    async with connection(db_url) as conn:
        rows = await conn.fetch(
            "SELECT rule, dataset, reason FROM ops.quarantine WHERE exchange = $1", exchange
        )
    assert [(r["rule"], r["dataset"]) for r in rows] == [(REJECTED_RULE, "candles")]
    assert "candles_high" in rows[0]["reason"] or "check constraint" in rows[0]["reason"]


def test_spill_files_keep_order_and_content(tmp_path: Path) -> None:
    store = SpillStore(tmp_path)
    tables = [pa.table({"x": [i]}) for i in range(4)]
    store.append(Batch("t.b", tables[2]))
    store.append(Batch("t.b", tables[3]))
    store.prepend([Batch("t.a", tables[0], dataset="trades"), Batch("t.a", tables[1])])
    read = [SpillStore.read(p) for p in SpillStore(tmp_path).files()]
    assert [b.data.column("x")[0].as_py() for b in read] == [0, 1, 2, 3]
    assert [b.table for b in read] == ["t.a", "t.a", "t.b", "t.b"]
    assert read[0].dataset == "trades" and read[1].dataset is None
    assert SpillStore(tmp_path).rows == 4
