"""The streaming job through Dagster: a bounded run streams and reports, and a run stopped by
SIGTERM (what terminating it delivers) flushes, saves its state and ends interrupted."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from ats_pipelines.defs.streaming.jobs import streaming_service_job
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.stream import StreamResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource


def _resources(db_url: str, emu: Any, tmp_path: Path) -> dict[str, Any]:
    return {
        "timescale": TimescaleResource(database_url=db_url),
        "exchange": ExchangeResource(rest_url=emu.rest_url, backoff_base_s=0.05),
        "stream": StreamResource(state_dir=str(tmp_path)),
    }


def _run_config(store_as: str, duration_s: float | None) -> dict[str, Any]:
    return {
        "ops": {
            "run_stream_service": {
                "config": {
                    "symbols": ["BTC/USDT"],
                    "store_as": store_as,
                    "grace_ms": 5_000,
                    "heal_interval_s": 1.0,
                    "watch_books": False,
                    "duration_s": duration_s,
                }
            }
        }
    }


def _count(db_url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


def test_a_bounded_run_streams_bars_and_reports(db_url: str, tmp_path: Path) -> None:
    store_as = f"d{uuid.uuid4().hex[:8]}"
    config = EmulatorConfig(
        speed=60.0, start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=1)
    )
    with emulator_in_thread(config) as emu:
        result = streaming_service_job.execute_in_process(
            run_config=_run_config(store_as, 4.0), resources=_resources(db_url, emu, tmp_path)
        )
    assert result.success
    [materialization] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = materialization.event_specific_data.metadata  # type: ignore[union-attr]
    assert int(metadata["trades_applied"].value) > 50  # type: ignore[arg-type]
    assert metadata["stop_reason"].value == "duration 4.0s reached"
    bars = _count(
        db_url,
        "SELECT count(*) FROM market.candles WHERE exchange = %s AND source = 'stream'",
        store_as,
    )
    assert bars >= 2
    assert (
        _count(db_url, "SELECT count(*) FROM ops.stream_state WHERE exchange = %s", store_as) == 1
    )


def test_sigterm_flushes_saves_state_and_ends_the_run_interrupted(
    db_url: str, tmp_path: Path
) -> None:
    store_as = f"d{uuid.uuid4().hex[:8]}"
    caught: list[int] = []
    # a safety net: should the service not handle SIGTERM, the test fails instead of dying
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))

    def terminate_when_streaming() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                _count(db_url, "SELECT count(*) FROM market.trades WHERE exchange = %s", store_as)
                > 20
            ):
                # what terminating a run does: mark it canceling, then signal its process
                instance.report_run_canceling(instance.get_runs()[0])
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    config = EmulatorConfig(
        speed=60.0, start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=1)
    )
    instance = dg.DagsterInstance.ephemeral()
    try:
        with emulator_in_thread(config) as emu:
            killer = threading.Thread(target=terminate_when_streaming, daemon=True)
            killer.start()
            with pytest.raises(dg.DagsterExecutionInterruptedError, match="SIGTERM"):
                streaming_service_job.execute_in_process(
                    run_config=_run_config(store_as, None),
                    instance=instance,
                    resources=_resources(db_url, emu, tmp_path),
                )
            killer.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == []  # the service's handler took it (stop reason SIGTERM), not the net
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert _count(db_url, "SELECT count(*) FROM market.trades WHERE exchange = %s", store_as) > 20
    assert (
        _count(db_url, "SELECT count(*) FROM ops.stream_state WHERE exchange = %s", store_as) == 1
    )
    assert not list(tmp_path.rglob("*.arrow"))  # everything reached the database


def test_a_run_whose_worker_died_is_relaunched_but_a_configuration_error_is_not() -> None:
    """Dagster's run retries (instance-wide in dagster.yaml, opted into per job by tag):
    the streaming job is retried when its run worker dies, never for an op failure (the
    service fails only on a configuration error)."""
    import yaml

    from ats_pipelines.config import project_root

    instance = yaml.safe_load((project_root() / "dagster.yaml").read_text())
    assert instance["run_retries"]["enabled"] is True
    assert instance["run_monitoring"]["enabled"] is True
    tags = streaming_service_job.tags
    assert int(tags["dagster/max_retries"]) >= 100
    assert tags["dagster/retry_on_asset_or_op_failure"] == "false"
