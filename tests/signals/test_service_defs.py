"""The live signal service through Dagster: a bounded ``signal_service_job`` run catches up,
beats and reports; the freshness check passes while it beats and fails once the heartbeat is
stale (or when no service of the analyzer ever beat)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest

from ats_pipelines.defs.signals.definitions import build_signals_defs
from ats_pipelines.defs.signals.service import FRESHNESS_SENSOR, SERVICE_JOB
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from tests.signals.conftest import make_settings, run_sync, write_bars

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def verdict(defs: dg.Definitions, resources: dict[str, Any], instance: Any) -> Any:
    context = dg.build_sensor_context(cursor=None, instance=instance, resources=resources)
    result = defs.resolve_sensor_def(FRESHNESS_SENSOR).evaluate_tick(context)
    (evaluation,) = result.asset_events
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    return evaluation


def test_service_job_runs_beats_and_freshness_follows_the_heartbeat(
    db_url: str,
    redis_url: str,
    exchange_name: str,
    eth_btc_5m: pl.DataFrame,
    instance: dg.DagsterInstance,
) -> None:
    settings = make_settings(exchange_name, timeframes=("5m",), coordinator=("5m",))
    run_sync(write_bars(db_url, exchange_name, "ETH/BTC", "5m", eth_btc_5m.head(500)))
    resources = {"timescale": TimescaleResource(database_url=db_url)}
    defs = dg.Definitions.merge(build_signals_defs(settings), dg.Definitions(resources=resources))

    never = verdict(defs, resources, instance)
    assert not never.passed and "no live signal service" in str(never.description)

    service_id = f"job-{settings.analyzer_id}"
    config = {
        "service_id": service_id,
        "duration_s": 2.0,
        "heartbeat_interval_s": 0.5,
        "redis_url": redis_url,
    }
    result = defs.resolve_job_def(SERVICE_JOB).execute_in_process(
        run_config={"ops": {"run_signal_service": {"config": config}}}, instance=instance
    )
    assert result.success
    summary = result.output_for_node("run_signal_service")
    assert summary["signals"] > 5  # the catch-up analysed the stored bars
    assert summary["decisions"] == summary["signals"]  # one timeframe: one decision each
    assert summary["stop_reason"] == "duration 2.0s reached"

    fresh = verdict(defs, resources, instance)
    assert fresh.passed, fresh.description
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE signals.service_heartbeats SET last_beat = now() - interval '5 minutes' "
            "WHERE service_id = %s",
            (service_id,),
        )
    stale = verdict(defs, resources, instance)
    assert not stale.passed
    assert f"stale signal service: {service_id}" in str(stale.description)
