"""Acceptance of the live signal path: the streaming service streams the emulator's synthetic
market and publishes a bar event per commit; the live signal service, running meanwhile, turns
them into detected signals and decisions. Compared with a replay of the same stored bars:
every signal and decision, once, with the same values. Stopped for a few bars and started
again, the service catches up from its watermarks and the result is the same."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread, wait_until
from ats_pipelines.lib.timeframes import floor_ms
from ats_pipelines.signals.config import CoordinatorRules, SignalsSettings, TrendParams
from ats_pipelines.signals.live import LiveConfig, SignalService
from ats_pipelines.signals.replay import Comparison, compare_with_live, replay
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.service import StreamService

pytestmark = pytest.mark.integration

SPEED = 300.0  # five exchange minutes a wall second
START = FIXED_START_MS + 2 * 3_600_000  # 14:00 exchange time
SYMBOLS = ("BTC/USDT", "ETH/USDT")
MINUTE = 60_000
# small rules, so that the synthetic market's hour and a half holds enough signals (about
# seven per hundred minutes and symbol) and decisions
PARAMS = {
    "1m": TrendParams(swing=1, lookback=20, sensitivity=0.0),
    "5m": TrendParams(swing=1, lookback=8, sensitivity=0.0),
}
WINDOW = timedelta(minutes=10)
# the replay's range starts once every bar it looks back at was stored by the stream (the
# first, partial buckets are healed from REST later, behind the live watermark): the 5m
# lookback, plus the coordinator window and the longest timeframe the replay pads with
WARMUP_MS = (8 * 5 + 10 + 5 + 5) * MINUTE
COMPARED_MS = 90 * MINUTE
# safety limits only (never timing assertions): on a loaded machine the stream's stop (its
# final refill, checkpoint and flush) took more than a minute
STOP_LIMIT_S = 300.0


def settings_for(exchange: str) -> SignalsSettings:
    tag = uuid.uuid4().hex[:8]
    rules = CoordinatorRules(coordinator_id=f"coord_{tag}", timeframes=("1m", "5m"), window=WINDOW)
    return SignalsSettings(
        exchange=exchange,
        symbols=SYMBOLS,
        timeframes=("1m", "5m"),
        analyzer_id=f"trend_{tag}",
        trend_params=dict(PARAMS),
        coordinator=rules,
    )


def stream_config(emu: Any, db_url: str, redis_url: str, tmp_path: Path) -> StreamConfig:
    return StreamConfig(
        database_url=db_url,
        symbols=SYMBOLS,
        exchange_url=emu.rest_url,
        store_as=f"s{uuid.uuid4().hex[:8]}",
        timeframes=("1m", "5m"),
        grace_ms=60_000,  # no late trade changes a committed bar (the healer would rewrite it)
        watch_books=False,
        redis_url=redis_url,
        tick_s=0.05,
        heal_interval_s=2.0,
        checkpoint_interval_s=2.0,
        heartbeat_interval_s=1.0,
        spill_dir=tmp_path / "spill",
        clock_sync_s=5.0,
    )


def live_config(db_url: str, redis_url: str) -> LiveConfig:
    # a sweep interval far beyond the test: every bar is analysed because of its event
    return LiveConfig(
        database_url=db_url,
        redis_url=redis_url,
        service_id=f"test-{uuid.uuid4().hex[:8]}",
        sweep_interval_s=600.0,
        heartbeat_interval_s=1.0,
    )


async def start_service(service: SignalService, timeframes: tuple[str, ...]) -> asyncio.Task:
    run = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), STOP_LIMIT_S)
    await wait_until(lambda: service.caught_up == set(timeframes), "the catch-up", STOP_LIMIT_S)
    return run


def replay_range(stream: StreamService) -> tuple[datetime, datetime]:
    first = max(p.coverage_from or 0 for p in stream.pipelines.values())
    start = floor_ms(first, "5m") + 5 * MINUTE + WARMUP_MS
    return _dt(start), _dt(start + COMPARED_MS)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def stream_past(stream: StreamService, moment: datetime, what: str) -> None:
    ms = int(moment.timestamp() * 1000)
    await wait_until(
        lambda: (
            bool(stream.pipelines) and all(p.closed_before > ms for p in stream.pipelines.values())
        ),
        what,
        STOP_LIMIT_S,
    )


async def watermarks(db_url: str, settings: SignalsSettings) -> dict[tuple[str, str], Any]:
    async with connection(db_url) as conn:
        rows = await conn.fetch(
            "SELECT symbol, timeframe, last_processed_ts FROM signals.analyzer_watermarks "
            "WHERE analyzer_id = $1",
            settings.analyzer_id,
        )
    return {(r["symbol"], r["timeframe"]): r["last_processed_ts"] for r in rows}


async def live_matches_replay(
    db_url: str, settings: SignalsSettings, start: datetime, end: datetime
) -> tuple[Any, Comparison]:
    """The replay of ``[start, end)`` and its comparison with the live rows, once the live
    path has had the time to decide everything in the range (polled, with a safety limit)."""
    result, comparison = None, None
    deadline = time.monotonic() + STOP_LIMIT_S
    while time.monotonic() < deadline:
        async with connection(db_url) as conn:
            result = await replay(conn, settings, start, end)
            comparison = await compare_with_live(conn, result)
        if comparison.matches:
            break
        await asyncio.sleep(0.1)
    assert result is not None and comparison is not None
    return result, comparison


async def duplicates(db_url: str, settings: SignalsSettings) -> int:
    async with connection(db_url) as conn:
        extra = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT (symbol, timeframe, ts, signal_type)) "
            "FROM signals.detected_signals WHERE analyzer_id = $1",
            settings.analyzer_id,
        )
    return int(extra or 0)


async def test_live_signals_equal_the_replay_once(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    emulator = EmulatorConfig(
        speed=SPEED, start_ms=START, birdeye=None, synthetic=SyntheticConfig(symbol_count=2)
    )
    with emulator_in_thread(emulator) as emu:
        config = stream_config(emu, db_url, redis_url, tmp_path)
        settings = settings_for(config.label)
        service = SignalService(settings, live_config(db_url, redis_url))
        live = await start_service(service, settings.timeframes)
        stream = StreamService(config)
        streaming = asyncio.create_task(stream.run())
        await asyncio.wait_for(stream.ready.wait(), STOP_LIMIT_S)
        await wait_until(
            lambda: all(p.coverage_from for p in stream.pipelines.values()), "trades", STOP_LIMIT_S
        )
        start, end = replay_range(stream)
        await stream_past(stream, end + timedelta(minutes=6), "the end of the compared range")
        stream.request_stop("test over")
        await asyncio.wait_for(streaming, STOP_LIMIT_S)
        result, comparison = await live_matches_replay(db_url, settings, start, end)
        service.request_stop("test over")
        summary = await asyncio.wait_for(live, STOP_LIMIT_S)

    assert comparison.matches, comparison.as_dict()
    # enough to mean something, on both timeframes and in the coordinator
    assert len(result.signals) >= 6, len(result.signals)
    assert len(result.decisions) >= 6, len(result.decisions)
    assert comparison.live_signals == len(result.signals)
    assert await duplicates(db_url, settings) == 0
    # produced by the events, not by a sweep: the sweep interval is longer than the test
    assert summary["sweeps"] == len(settings.timeframes)  # the catch-up at start only
    assert summary["events"] > 0
    assert service.metrics.recent["bar_to_signal"].count > 0
    assert service.metrics.recent["bar_to_decision"].count > 0


async def test_restarted_service_processes_the_bars_it_missed(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    emulator = EmulatorConfig(
        speed=SPEED, start_ms=START, birdeye=None, synthetic=SyntheticConfig(symbol_count=2)
    )
    with emulator_in_thread(emulator) as emu:
        config = stream_config(emu, db_url, redis_url, tmp_path)
        settings = settings_for(config.label)
        first = SignalService(settings, live_config(db_url, redis_url))
        live = await start_service(first, settings.timeframes)
        stream = StreamService(config)
        streaming = asyncio.create_task(stream.run())
        await asyncio.wait_for(stream.ready.wait(), STOP_LIMIT_S)
        await wait_until(
            lambda: all(p.coverage_from for p in stream.pipelines.values()), "trades", STOP_LIMIT_S
        )
        start, end = replay_range(stream)
        down_at = start + timedelta(minutes=20)
        await stream_past(stream, down_at, "the service's stop")
        first.request_stop("restart test")
        await asyncio.wait_for(live, STOP_LIMIT_S)
        stopped = await watermarks(db_url, settings)
        # down for a few bars: at least two 5m bars and their minutes go by unanalysed
        at_stop = _dt(min(p.closed_before for p in stream.pipelines.values()))
        await stream_past(stream, at_stop + timedelta(minutes=13), "bars while it is down")
        missed = await watermarks(db_url, settings)
        second = SignalService(settings, live_config(db_url, redis_url))
        live = await start_service(second, settings.timeframes)
        caught_up = await watermarks(db_url, settings)
        await stream_past(stream, end + timedelta(minutes=6), "the end of the compared range")
        stream.request_stop("test over")
        await asyncio.wait_for(streaming, STOP_LIMIT_S)
        result, comparison = await live_matches_replay(db_url, settings, start, end)
        second.request_stop("test over")
        await asyncio.wait_for(live, STOP_LIMIT_S)

    assert missed == stopped  # nothing analysed while it was down ...
    for key, mark in caught_up.items():  # ... everything at once when it came back
        assert mark >= stopped[key] + timedelta(minutes=10), (key, mark, stopped[key])
    assert comparison.matches, comparison.as_dict()
    assert len(result.signals) >= 6 and len(result.decisions) >= 6
    assert await duplicates(db_url, settings) == 0
