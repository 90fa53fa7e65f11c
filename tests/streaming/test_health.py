"""Heartbeats -> freshness: the verdict, the sensor that records it for the UI (once per
change), and the asset check run on demand."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.defs.streaming.checks import stream_fresh
from ats_pipelines.defs.streaming.sensors import stream_freshness_sensor
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.streaming.health import Heartbeat, beat, freshness

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def run_sync(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def hb(shard: str, beat_age_s: float, trade_age_s: float | None = 1.0) -> Heartbeat:
    stats: dict[str, Any] = {} if trade_age_s is None else {"last_trade_age_s": trade_age_s}
    return Heartbeat(
        shard,
        "binance",
        ["BTC/USDT"],
        NOW - timedelta(hours=1),
        NOW - timedelta(seconds=beat_age_s),
        None,
        stats,
    )


@pytest.mark.parametrize(
    ("beats", "passed", "stale"),
    [
        ([hb("a", 5), hb("b", 10)], True, []),
        ([hb("a", 5), hb("b", 120)], False, ["b"]),  # stopped beating
        ([hb("a", 5, trade_age_s=900)], False, ["a"]),  # beats, but no trade for 15 minutes
        ([hb("a", 5, trade_age_s=None)], True, []),  # never saw a trade yet: judged by beats
        ([], False, []),  # nobody streams
    ],
)
def test_freshness_verdict(beats: list[Heartbeat], passed: bool, stale: list[str]) -> None:
    verdict = freshness(beats, NOW)
    assert verdict.passed is passed
    assert [s.shard for s in verdict.shards if not s.fresh] == stale
    assert verdict.summary


def test_a_named_shard_without_heartbeat_is_stale() -> None:
    verdict = freshness([hb("a", 5)], NOW, shards=["a", "b"])
    assert not verdict.passed and "b: no heartbeat" in verdict.summary


@pytest.fixture(scope="module")
def health_db(make_database: Any) -> str:
    """A database of its own: the sensor reads every shard's heartbeat."""
    url = make_database("ats_stream_health")

    async def setup() -> None:
        async with connection(url) as conn:
            await migrate(conn)

    run_sync(setup())
    return url


def _beat(url: str, shard: str, age_s: float) -> None:
    async def body() -> None:
        async with connection(url) as conn:
            await beat(
                conn,
                shard=shard,
                exchange="binance",
                symbols=["BTC/USDT"],
                host="h",
                started_at=NOW,
                last_trade_ts=None,
                stats={"last_trade_age_s": 1.0},
            )
            await conn.execute(
                "UPDATE ops.stream_heartbeats SET last_beat = now() - "
                "make_interval(secs => $2) WHERE shard = $1",
                shard,
                age_s,
            )

    run_sync(body())


def test_sensor_records_the_check_when_freshness_changes(health_db: str) -> None:
    timescale = TimescaleResource(database_url=health_db)
    _beat(health_db, "binance:0/2", 2)
    _beat(health_db, "binance:1/2", 3)
    context = dg.build_sensor_context(resources={"timescale": timescale})
    first = stream_freshness_sensor(context)
    assert isinstance(first, dg.SensorResult)
    [evaluation] = first.asset_events
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    assert evaluation.passed and evaluation.check_name == "stream_fresh"
    # same verdict, cursor given: nothing new recorded
    same = stream_freshness_sensor(
        dg.build_sensor_context(cursor=first.cursor, resources={"timescale": timescale})
    )
    assert isinstance(same, dg.SensorResult) and not same.asset_events
    # one shard goes quiet: a failed evaluation naming it
    _beat(health_db, "binance:1/2", 600)
    stale = stream_freshness_sensor(
        dg.build_sensor_context(cursor=same.cursor, resources={"timescale": timescale})
    )
    assert isinstance(stale, dg.SensorResult)
    [failed] = stale.asset_events
    assert isinstance(failed, dg.AssetCheckEvaluation) and not failed.passed
    assert json.loads(stale.cursor or "{}")["state"]["stale"] == ["binance:1/2"]
    assert failed.metadata["stale_shards"].value == ["binance:1/2"]
    # the asset check says the same when run on demand
    result = stream_fresh(timescale=timescale)
    assert isinstance(result, dg.AssetCheckResult) and not result.passed
    assert "binance:1/2" in (result.description or "")
