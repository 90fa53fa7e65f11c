"""Sensors on the real database: nothing new requests nothing, new bars request exactly one run
per (analyzer, symbol, timeframe), and the requested runs, executed through Dagster, catch the
watermarks up so the next evaluation is quiet again; the coordinator sensor likewise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.defs.signals.definitions import build_signals_defs
from ats_pipelines.defs.signals.jobs import COORDINATION, TREND_ANALYSIS
from ats_pipelines.defs.signals.sensors import analyzer_sensor_name
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.config import SignalsSettings
from tests.signals.conftest import make_settings, run_sync, write_bars

pytestmark = pytest.mark.integration

SYMBOLS = ("ETH/BTC", "ETH/BTC-B")


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


class SignalDefs:
    """The signals definitions of one test and ways to evaluate and run them."""

    def __init__(
        self, settings: SignalsSettings, db_url: str, instance: dg.DagsterInstance
    ) -> None:
        self.settings = settings
        self.resources = {"timescale": TimescaleResource(database_url=db_url)}
        self.defs = dg.Definitions.merge(
            build_signals_defs(settings), dg.Definitions(resources=self.resources)
        )
        self.instance = instance

    def evaluate(self, name: str, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        sensor = self.defs.resolve_sensor_def(name)
        context = dg.build_sensor_context(
            cursor=cursor, instance=self.instance, resources=self.resources
        )
        result = sensor.evaluate_tick(context)
        return list(result.run_requests or []), result.cursor

    def launch(self, job: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_job_def(job).execute_in_process(
            run_config=request.run_config, instance=self.instance, tags=request.tags
        )
        assert result.success
        return result


@pytest.fixture
def signal_defs(db_url: str, exchange_name: str, instance: dg.DagsterInstance) -> SignalDefs:
    settings = make_settings(exchange_name, SYMBOLS, timeframes=("5m", "15m"), coordinator=("5m",))
    return SignalDefs(settings, db_url, instance)


def load(db_url: str, exchange: str, bars: pl.DataFrame) -> None:
    for symbol in SYMBOLS:
        run_sync(write_bars(db_url, exchange, symbol, "5m", bars))


def config_of(request: dg.RunRequest) -> dict[str, Any]:
    return request.run_config["ops"]["detected_signals"]["config"]


def test_analyzer_sensor_requests_one_run_per_series_with_new_bars(
    signal_defs: SignalDefs, db_url: str, eth_btc_5m: pl.DataFrame
) -> None:
    sensor5, sensor15 = analyzer_sensor_name("5m"), analyzer_sensor_name("15m")
    exchange = signal_defs.settings.exchange
    requests, cursor = signal_defs.evaluate(sensor5, None)
    assert requests == []  # no bars at all

    load(db_url, exchange, eth_btc_5m.head(600))
    requests, cursor = signal_defs.evaluate(sensor5, cursor)
    newest = eth_btc_5m["ts"][599].isoformat()
    analyzer = signal_defs.settings.analyzer_id
    assert sorted(r.run_key or "" for r in requests) == sorted(
        f"analyzer:{analyzer}:{exchange}:{s}:5m:{newest}" for s in SYMBOLS
    )
    assert sorted(config_of(r)["symbols"][0] for r in requests) == list(SYMBOLS)
    assert all(config_of(r)["timeframes"] == ["5m"] for r in requests)
    assert signal_defs.evaluate(sensor15, None)[0] == []  # no 15m bars: nothing to analyse

    # evaluating again (and again) without new bars requests nothing
    for _ in range(3):
        again, cursor = signal_defs.evaluate(sensor5, cursor)
        assert again == []
    # a lost cursor asks again, with the same run keys: the daemon never launches them twice
    lost, _ = signal_defs.evaluate(sensor5, None)
    assert sorted(r.run_key or "" for r in lost) == sorted(r.run_key or "" for r in requests)

    for request in requests:
        signal_defs.launch(TREND_ANALYSIS, request)
    assert signal_defs.evaluate(sensor5, None)[0] == []  # watermarks caught up

    load(db_url, exchange, eth_btc_5m.slice(600, 3))
    requests, cursor = signal_defs.evaluate(sensor5, cursor)
    newest = eth_btc_5m["ts"][602].isoformat()
    assert sorted(r.run_key or "" for r in requests) == sorted(
        f"analyzer:{analyzer}:{exchange}:{s}:5m:{newest}" for s in SYMBOLS
    )
    assert json.loads(cursor or "{}") == {f"{exchange}|{s}": newest for s in SYMBOLS}
    assert signal_defs.evaluate(sensor5, cursor)[0] == []


def test_analyzer_run_metadata_and_coordinator_sensor(
    signal_defs: SignalDefs, db_url: str, eth_btc_5m: pl.DataFrame
) -> None:
    load(db_url, signal_defs.settings.exchange, eth_btc_5m.head(800))
    requests, _ = signal_defs.evaluate(analyzer_sensor_name("5m"), None)
    results = [signal_defs.launch(TREND_ANALYSIS, r) for r in requests]
    (event,) = results[0].asset_materializations_for_node("detected_signals")
    meta = event.metadata
    assert meta["bars_analysed"].value == 800
    first_written = meta["signals_written"].value
    assert isinstance(first_written, int) and first_written > 5
    (event,) = results[1].asset_materializations_for_node("detected_signals")
    counts = event.metadata["counts_by_timeframe"].value
    assert isinstance(counts, dict)
    per_type = counts["5m"]
    assert isinstance(per_type, dict)
    # the same bars under both symbols
    assert sum(int(str(n)) for n in per_type.values()) == 2 * first_written
    assert "uptrendStart" in str(event.metadata["latest"].value)

    coordinator = "signal_coordinator_sensor"
    requests, cursor = signal_defs.evaluate(coordinator, None)
    assert len(requests) == 1 and (requests[0].run_key or "").startswith(
        f"coordinator:{signal_defs.settings.coordinator.coordinator_id}:0:"
    )
    assert signal_defs.evaluate(coordinator, cursor)[0] == []
    result = signal_defs.launch(COORDINATION, requests[0])
    (event,) = result.asset_materializations_for_node("coordinated_signals")
    assert event.metadata["decisions_written"].value == 2 * first_written
    assert "ETH/BTC-B" in str(event.metadata["latest_per_symbol"].value)
    assert signal_defs.evaluate(coordinator, None)[0] == []  # everything decided


def test_definitions_have_a_sensor_per_timeframe_and_no_schedules(signal_defs: SignalDefs) -> None:
    defs = signal_defs.defs
    names = {s.name for s in defs.sensors or []}
    assert names == {
        "trend_analyzer_5m_sensor",
        "trend_analyzer_15m_sensor",
        "signal_coordinator_sensor",
        "signal_service_freshness_sensor",
    }
    assert not defs.schedules
    for name in names:
        sensor = defs.resolve_sensor_def(name)
        assert sensor.minimum_interval_seconds == 30
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    for job in (TREND_ANALYSIS, COORDINATION, "signal_replay_job", "signal_service_job"):
        defs.resolve_job_def(job)
