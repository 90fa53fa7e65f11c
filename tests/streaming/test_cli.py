"""``ats stream``: configured from the environment and options, stops on SIGTERM with every
queue flushed and exit code 0; a bad symbol is one clear error line and exit code 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from ats_pipelines.cli.main import app
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread


def _trades(db_url: str, exchange: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM market.trades WHERE exchange = %s", (exchange,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_sigterm_stops_the_stream_cleanly_with_exit_code_0(db_url: str, tmp_path: Path) -> None:
    store_as = f"c{uuid.uuid4().hex[:8]}"
    config = EmulatorConfig(
        speed=60.0, start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=2)
    )
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))

    def terminate_when_streaming() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _trades(db_url, store_as) <= 50:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        with emulator_in_thread(config) as emu:
            env = {
                "ATS_DATABASE_URL": db_url,
                "ATS_EXCHANGE_URL": emu.rest_url,
                "ATS_SYMBOLS": "ETH/USDT,BTC/USDT",
                "ATS_STATE_DIR": str(tmp_path),
            }
            killer = threading.Thread(target=terminate_when_streaming, daemon=True)
            killer.start()
            result = CliRunner().invoke(
                app,
                ["stream", "--store-as", store_as, "--shard", "1/2", "--no-cache", "--no-books"],
                env=env,
            )
            killer.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == []
    assert result.exit_code == 0, result.output
    assert f"stream {store_as}:1/2 stopped (SIGTERM)" in result.output
    with psycopg.connect(db_url) as conn:
        symbols = conn.execute(
            "SELECT symbol FROM ops.stream_state WHERE exchange = %s", (store_as,)
        ).fetchall()
        shards = conn.execute(
            "SELECT symbols FROM ops.stream_heartbeats WHERE shard = %s", (f"{store_as}:1/2",)
        ).fetchall()
    assert symbols == [("ETH/USDT",)]  # shard 1 of 2 of the sorted symbols
    assert shards == [(["ETH/USDT"],)]
    assert not list(tmp_path.rglob("*.arrow"))


def test_an_unknown_symbol_is_one_clear_error(db_url: str, tmp_path: Path) -> None:
    """As a person runs it (a process of its own, logging to its stderr): no traceback."""
    config = EmulatorConfig(
        start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=1)
    )
    with emulator_in_thread(config) as emu:
        env = {
            **os.environ,
            "ATS_DATABASE_URL": db_url,
            "ATS_EXCHANGE_URL": emu.rest_url,
            "ATS_STATE_DIR": str(tmp_path),
        }
        argv = ["stream", "--symbols", "NOPE/USDT", "--no-cache", "--no-books"]
        done = subprocess.run(
            [sys.executable, "-m", "ats_pipelines.cli.main", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "has no market NOPE/USDT" in last, output
