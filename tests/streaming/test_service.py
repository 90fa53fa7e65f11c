"""Acceptance: the service against the emulator's synthetic market, through disconnects every
few seconds, an injected book sequence gap, duplicated and reordered trades and one PostgreSQL
restart, stores every 1m..4h bar exactly as the emulator's own klines — none missing, none
extra, none different — and every trade once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from ats_pipelines.cache.keys import bars_key, book_key, decode_bar, decode_book
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.faults import FaultConfig
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread, wait_until
from ats_pipelines.streaming.service import StreamService

START = FIXED_START_MS + (3 * 60 + 55) * 60_000  # 15:55 exchange time
SPEED = 150.0  # an exchange hour in 24 wall seconds
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
COMPARED = ("1m", "5m", "15m", "1h", "4h")  # 1d: no day closes within the run


async def test_bars_equal_the_emulator_klines_through_faults_and_a_database_restart(
    make_config: Any, dedicated_cluster: Any, oracle: Any, redis_url: str
) -> None:
    faults = FaultConfig(seed=3, drop_every_s=3.0, duplicate_every=7, reorder_every=11)
    # the emulator on its own loop and thread, like a separate exchange
    with emulator_in_thread(
        EmulatorConfig(
            speed=SPEED,
            start_ms=START,
            birdeye=None,
            faults=faults,
            synthetic=SyntheticConfig(symbol_count=2),
        )
    ) as emu:
        await _run(emu, make_config, dedicated_cluster, oracle, redis_url)


async def _run(
    emu: Any, make_config: Any, dedicated_cluster: Any, oracle: Any, redis_url: str
) -> None:
    config = make_config(
        emu,
        database_url=dedicated_cluster.url,
        timeframes=TIMEFRAMES,
        grace_ms=60_000,
        buffer_rows=200,
        max_pending_rows=5_000,
        redis_url=redis_url,
        metrics_port=0,
    )
    service = StreamService(config)
    run = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 30)
    t0 = time.monotonic()

    async def at(seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))

    await at(4)
    for _ in range(5):  # a book sequence gap, while a book is in sync (not mid-reconnect)
        resyncs = service.books_client.stats["resyncs"] if service.books_client else 0
        emu.faults.skip_next_diff("BTCUSDT")
        await asyncio.sleep(0.6)
        if service.books_client and service.books_client.stats["resyncs"] > resyncs:
            break
    await at(8)
    await asyncio.to_thread(dedicated_cluster.stop)  # the database goes away ...
    await at(12)
    await asyncio.to_thread(dedicated_cluster.start)  # ... and comes back
    metrics_text = await _scrape(service.metrics.port)
    # run until the 16:00-17:00 hour is over (17:01 exchange time, plus the grace)
    await wait_until(lambda: emu.clock.now_ms() >= START + 67 * 60_000, "17:02 exchange time", 60)
    passes = service.heal_passes
    await wait_until(lambda: service.heal_passes >= passes + 2, "two heal passes", 30)
    service.request_stop("test over")
    summary = await asyncio.wait_for(run, 60)

    # the faults really happened, and the service noticed each kind
    assert emu.faults.counts["ws_dropped"] >= 4
    assert emu.faults.counts["trades_duplicated"] > 0 and emu.faults.counts["trades_reordered"] > 0
    assert emu.faults.counts["diffs_skipped"] >= 1
    assert summary["book_resyncs"] >= 1
    assert summary["reconnects"]["trades"] >= 4
    assert summary["trades"]["backfilled"] > 0  # trades missed during drops, fetched over REST
    assert summary["trades"]["late"] == 0 and summary["trades"]["invalid"] == 0
    assert service.bars_lane.spilled_batches + service.bulk_lane.spilled_batches > 0
    assert service.metrics.db_errors.labels(lane="bars")._value.get() > 0
    assert not service.bars_lane.spill and not service.bulk_lane.spill  # all replayed

    async with connection(dedicated_cluster.url) as conn:
        for symbol in ("BTC/USDT", "ETH/USDT"):
            pipeline = service.pipelines[symbol]
            closed_before, first_trade = pipeline.closed_before, pipeline.coverage_from
            assert first_trade is not None and first_trade < START + 5 * 60_000
            assert closed_before >= START + 65 * 60_000  # the 16:00-17:00 hour is over
            # every bucket from the one holding the first trade the service saw
            result = await oracle.bars(
                conn, emu, config.label, symbol, COMPARED, first_trade, closed_before
            )
            assert result.ok, (symbol, result.missing[:5], result.wrong[:3], result.extra[:5])
            assert result.compared >= 70  # 62 minutes, 12 five-minute bars, 2 hours, ...
            # the stream made nearly all of them; the healer only the partial first buckets
            # the healer made the partial first buckets (one per timeframe) and any whose
            # trades could not be fetched in time; the stream made (nearly) all the others
            assert result.sources.get("heal", 0) >= len(COMPARED)
            assert result.sources.get("stream", 0) >= 0.8 * result.compared
            count, missing, wrong = await oracle.trades(conn, emu, config.label, symbol)
            assert count > 1000 and missing == [] and wrong == []
            books = await conn.fetchval(
                "SELECT count(*) FROM market.order_book_snapshots WHERE exchange = $1 AND "
                "symbol = $2 AND imbalance_5 IS NOT NULL AND bid_depth_5pct > 0",
                config.label,
                symbol,
            )
            assert (books or 0) >= 10
        late = await conn.fetchval(
            "SELECT count(*) FROM ops.quarantine WHERE exchange = $1", config.label
        )
        assert late == 0
        beat = await conn.fetchrow(
            "SELECT * FROM ops.stream_heartbeats WHERE shard = $1", config.shard
        )
        assert beat is not None and sorted(beat["symbols"]) == ["BTC/USDT", "ETH/USDT"]

    # the hot cache holds every final bar as stored (healed ones too) and the book metrics
    cache = aioredis.from_url(redis_url)
    try:
        for tf in ("1m", "5m"):
            members = await cache.zrange(bars_key(config.label, "BTC/USDT", tf), 0, -1)
            cached = [decode_bar(m) for m in members]  # type: ignore[arg-type]
            async with connection(dedicated_cluster.url) as conn:
                rows = await conn.fetch(
                    "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts, open, close, "
                    "volume, trade_count, source FROM market.candles WHERE exchange = $1 AND "
                    "symbol = 'BTC/USDT' AND timeframe = $2 ORDER BY ts",
                    config.label,
                    tf,
                )
            assert [
                (c["ts"], c["open"], c["close"], c["volume"], c["trade_count"], c["source"])
                for c in cached
            ] == [tuple(r) for r in rows]
        book = decode_book(await cache.hgetall(book_key(config.label, "ETH/USDT")))
        assert book["mid"] is not None and -1 <= (book["imbalance_10"] or 0) <= 1
    finally:
        await cache.aclose()

    # Prometheus: per-hop histograms on the loopback endpoint
    assert 'ats_stream_latency_seconds_bucket{hop="exchange_to_received"' in metrics_text
    assert 'ats_stream_latency_seconds_count{hop="closed_to_committed"}' in metrics_text


async def _scrape(port: int | None) -> str:
    assert port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()
