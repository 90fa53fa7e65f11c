"""The production layout on this machine (`ats prod up`): a gRPC code server, the webserver and
the daemon as separate processes on the PostgreSQL instance; a run launched through the
webserver's GraphQL API succeeds while the streaming run holds on; killing the streaming run's
worker process fails that run, run retries start a new one, and no trade is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from ats_pipelines.deploy.graphql import DagsterWebClient, RunInfo
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ats(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )


def poll(what: str, probe: Callable[[], object], timeout_s: float = 240) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def trade_ranges(db_url: str) -> dict[str, tuple[int, int, int]]:
    """Per symbol: (stored trades, lowest id, highest id)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*), min(trade_id::bigint), max(trade_id::bigint) "
            "FROM market.trades WHERE exchange = 'binance' GROUP BY symbol"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.fixture
def layout(make_database, redis_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    db_url = make_database("ats_prod")  # `ats prod up` migrates it
    config = EmulatorConfig(
        speed=10.0, start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=2)
    )
    with emulator_in_thread(config) as emu:
        env = {
            "ATS_DATABASE_URL": db_url,
            "ATS_REDIS_URL": redis_url,
            "ATS_STATE_DIR": str(tmp_path),
            "ATS_WEBSERVER_PORT": str(_free_port()),
            "ATS_CODE_SERVER_PORT": str(_free_port()),
            "ATS_EXCHANGE_URL": emu.rest_url,
            "ATS_SYMBOLS": ",".join(SYMBOLS),
            # lossless restart: the new run refills the trade gap by id (historicalTrades)
            "ATS_EXCHANGE_API_KEY": "emulator",
            "ATS_EXCHANGE_SECRET": "emulator",
        }
        try:
            yield env, db_url
        finally:
            down = ats(env, "prod", "down", timeout=300)
            assert down.returncode == 0, down.stderr[-2000:]


def test_prod_layout_runs_jobs_and_restarts_a_killed_stream(
    layout: tuple[dict[str, str], str],
) -> None:
    env, db_url = layout
    up = ats(env, "prod", "up", "--shards", "1", "--timeout", "300")
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    assert "healthy: code-server, webserver, daemon" in up.stdout
    status = ats(env, "prod", "status")
    assert status.returncode == 0, status.stdout
    assert "stream 0/1: run" in status.stdout and "started" in status.stdout

    web = DagsterWebClient(int(env["ATS_WEBSERVER_PORT"]))
    # Dagster's storage database is the server's, shared with earlier layouts: this one's run
    (stream,) = web.runs(tags={"ats/stream_shard": "0/1"}, statuses=["STARTED"])
    # another run goes through the queue while the streaming run holds on
    run_id = web.launch("market_data_retention_job")
    assert web.wait(run_id, {"SUCCESS", "FAILURE", "CANCELED"}, 300) == "SUCCESS"

    poll("trades of both symbols", lambda: len(trade_ranges(db_url)) == 2)
    pid = web.worker_pid(stream.run_id)
    assert pid is not None
    before = trade_ranges(db_url)
    os.kill(pid, signal.SIGKILL)

    assert web.wait(stream.run_id, {"SUCCESS", "FAILURE", "CANCELED"}, 120) == "FAILURE"

    def retry() -> RunInfo | None:
        runs = web.runs(tags={"dagster/parent_run_id": stream.run_id})
        return runs[0] if runs and runs[0].status == "STARTED" else None

    restarted = poll("the retried streaming run", retry)
    assert isinstance(restarted, RunInfo)
    assert restarted.tags["ats/stream_shard"] == "0/1"  # same shard, same limits

    def caught_up() -> bool:
        now = trade_ranges(db_url)
        # well past the kill, every id between the first and the last stored: nothing lost
        return all(
            now[s][2] > before[s][2] + 100 and now[s][0] == now[s][2] - now[s][1] + 1
            for s in SYMBOLS
        )

    poll("trades past the kill with no id missing", caught_up, 300)
    after = trade_ranges(db_url)
    for symbol in SYMBOLS:
        assert after[symbol][1] <= before[symbol][1]  # the range spans the kill
