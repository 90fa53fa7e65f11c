"""The Dagster sensor path and the live service over the same bars: no duplicate, no gap.

Real 5m bars (and their 15m roll-up) arrive in rounds. Each round, the sensors' runs (evaluated
and executed through Dagster, as the daemon would) and the live service (woken by the bar
events the streaming service's publisher sends) both go for the new bars: the sensor path
first, the live service first, or both at once with the live one joining at a random moment
of the Dagster runs. Afterwards every signal and decision of the range equals the replay's,
each was written by exactly one of the two paths, and both paths wrote some."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.cache.events import BarEvent
from ats_pipelines.db.connect import connection
from ats_pipelines.defs.signals.definitions import build_signals_defs
from ats_pipelines.defs.signals.jobs import COORDINATION, TREND_ANALYSIS
from ats_pipelines.defs.signals.sensors import analyzer_sensor_name
from ats_pipelines.emulator.testing import wait_until
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.live import LiveConfig, SignalService
from ats_pipelines.signals.replay import Comparison, ReplayResult, compare_with_live, replay
from ats_pipelines.streaming.events import BarEventPublisher
from tests.signals.conftest import make_settings, roll_up, write_bars

pytestmark = pytest.mark.integration

SYMBOLS = ("ETH/BTC", "ETH/BTC-B")
TIMEFRAMES = ("5m", "15m")
FIRST = 1_200  # bars before the first round (the rules' history)
ROUND = 36  # 5m bars per round (three hours)
ROUNDS = 9
MODES = ("sensor_first", "live_first", "race")


class SensorPath:
    """The signals definitions' sensors and jobs, evaluated and executed in process."""

    def __init__(self, settings: SignalsSettings, db_url: str, instance: dg.DagsterInstance):
        self.resources = {"timescale": TimescaleResource(database_url=db_url)}
        self.defs = dg.Definitions.merge(
            build_signals_defs(settings), dg.Definitions(resources=self.resources)
        )
        self.instance = instance
        self.cursors: dict[str, str | None] = {}
        self.signals_written = 0
        self.decisions_written = 0

    def _tick(self, name: str) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            cursor=self.cursors.get(name), instance=self.instance, resources=self.resources
        )
        result = self.defs.resolve_sensor_def(name).evaluate_tick(context)
        self.cursors[name] = result.cursor
        return list(result.run_requests or [])

    def _launch(self, job: str, request: dg.RunRequest, asset: str, key: str) -> None:
        result = self.defs.resolve_job_def(job).execute_in_process(
            run_config=request.run_config, instance=self.instance, tags=request.tags
        )
        assert result.success
        for event in result.asset_materializations_for_node(asset):
            value = event.metadata[key].value
            assert isinstance(value, int)
            if asset == "detected_signals":
                self.signals_written += value
            else:
                self.decisions_written += value

    def run(self) -> None:
        for tf in TIMEFRAMES:
            for request in self._tick(analyzer_sensor_name(tf)):
                self._launch(TREND_ANALYSIS, request, "detected_signals", "signals_written")
        for request in self._tick("signal_coordinator_sensor"):
            self._launch(COORDINATION, request, "coordinated_signals", "decisions_written")


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def events(exchange: str, bars: dict[str, pl.DataFrame]) -> list[BarEvent]:
    now = time.time()
    return [
        BarEvent(exchange, symbol, tf, int(ts.timestamp() * 1000), now)
        for tf, frame in bars.items()
        for ts in frame["ts"]
        for symbol in SYMBOLS
    ]


async def caught_up(db_url: str, settings: SignalsSettings, newest: dict[str, object]) -> bool:
    async with connection(db_url) as conn:
        rows = await conn.fetch(
            "SELECT timeframe, last_processed_ts FROM signals.analyzer_watermarks "
            "WHERE analyzer_id = $1",
            settings.analyzer_id,
        )
    marks = [(r["timeframe"], r["last_processed_ts"]) for r in rows]
    return len(marks) == len(SYMBOLS) * len(TIMEFRAMES) and all(
        mark == newest[tf] for tf, mark in marks
    )


async def test_sensor_path_and_live_service_race_without_duplicate_or_gap(
    db_url: str,
    redis_url: str,
    exchange_name: str,
    eth_btc_5m: pl.DataFrame,
    instance: dg.DagsterInstance,
) -> None:
    settings = make_settings(exchange_name, SYMBOLS, timeframes=TIMEFRAMES, coordinator=TIMEFRAMES)
    bars5 = eth_btc_5m.head(FIRST + ROUND * ROUNDS)
    path = SensorPath(settings, db_url, instance)
    publisher = BarEventPublisher(redis_url)
    publisher.start()
    config = LiveConfig(
        database_url=db_url,
        redis_url=redis_url,
        service_id=f"race-{uuid.uuid4().hex[:8]}",
        sweep_interval_s=600.0,
    )
    service = SignalService(settings, config)
    live = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 300)
    await wait_until(lambda: service.caught_up == set(TIMEFRAMES), "the catch-up", 300)
    rng = random.Random(18)
    written, written15 = 0, 0
    try:
        for i in range(ROUNDS + 1):
            stop = FIRST + ROUND * i
            new5 = bars5.slice(written, stop - written)
            complete15 = roll_up(bars5.head(stop), "15m")  # buckets whose 5m bars are all in
            new15 = complete15.slice(written15)
            written15 = len(complete15)
            for symbol in SYMBOLS:
                await write_bars(db_url, exchange_name, symbol, "5m", new5)
                await write_bars(db_url, exchange_name, symbol, "15m", new15)
            written = stop
            batch = events(exchange_name, {"5m": new5, "15m": new15})
            mode = MODES[i % len(MODES)]
            if mode == "sensor_first":
                await asyncio.to_thread(path.run)
                publisher.publish(batch)
            elif mode == "live_first":
                publisher.publish(batch)
                newest = {"5m": new5["ts"][-1], "15m": complete15["ts"][-1]}
                await wait_until_async(lambda n=newest: caught_up(db_url, settings, n))
                await asyncio.to_thread(path.run)
            else:
                racing = asyncio.create_task(asyncio.to_thread(path.run))
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                publisher.publish(batch)
                await racing
        newest = {"5m": bars5["ts"][-1], "15m": roll_up(bars5, "15m")["ts"][-1]}
        await wait_until_async(lambda: caught_up(db_url, settings, newest))
        start = bars5["ts"][0] + timedelta(days=2)
        end = bars5["ts"][-1] + timedelta(minutes=5)
        result, comparison = await settled(db_url, settings, start, end)
        async with connection(db_url) as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM signals.detected_signals WHERE analyzer_id = $1",
                settings.analyzer_id,
            )
            decided = await conn.fetchval(
                "SELECT count(*) FROM signals.coordinated_signals WHERE coordinator_id = $1",
                settings.coordinator.coordinator_id,
            )
    finally:
        service.request_stop("test over")
        await asyncio.wait_for(live, 300)
        publisher.close()

    assert comparison.matches, comparison.as_dict()  # no gap, nothing extra, same values
    assert len(result.signals) > 50 and len(result.decisions) > 50
    # every signal and decision written once, by one of the two paths, and both took part
    assert path.signals_written + service.counts["signals"] == stored
    assert path.decisions_written + service.counts["decisions"] == decided
    assert path.signals_written > 0 and service.counts["signals"] > 0
    assert path.decisions_written > 0 and service.counts["decisions"] > 0


async def settled(
    db_url: str, settings: SignalsSettings, start: datetime, end: datetime
) -> tuple[ReplayResult, Comparison]:
    """The replay of the range and its comparison with the live rows, once they match (the
    last decisions may still be on their way; polled with a safety limit)."""
    deadline = time.monotonic() + 300  # a safety limit, not a timing assertion
    while True:
        async with connection(db_url) as conn:
            result = await replay(conn, settings, start, end)
            comparison = await compare_with_live(conn, result)
        if comparison.matches or time.monotonic() > deadline:
            return result, comparison
        await asyncio.sleep(0.1)


async def wait_until_async(check, limit_s: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not await check():
        assert time.monotonic() < deadline, f"gave up after {limit_s}s"
        await asyncio.sleep(0.05)
