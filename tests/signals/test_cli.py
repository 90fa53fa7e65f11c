"""``ats signals run`` as a person runs it: bad input is one clear line and exit code 1, never a
traceback; a bounded run against the database stops by itself with a summary and exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest


def ats(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", "signals", "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--sweep-interval", "0"], {}, "signal service sweep interval 0.0: must be > 0"),
        (["--heartbeat-interval", "-1"], {}, "heartbeat interval -1.0: must be > 0"),
        ([], {"ATS_SIGNAL_TIMEFRAMES": "7x"}, "ATS_SIGNAL_TIMEFRAMES: invalid timeframe '7x'"),
        ([], {"ATS_TREND_PARAMS": "5m:swing=two"}, "ATS_TREND_PARAMS: swing='two' of 5m"),
        (
            ["--no-events"],
            {"ATS_DATABASE_URL": "postgresql://ats@127.0.0.1:1/ats"},
            "cannot connect to PostgreSQL at 127.0.0.1:1/ats: connection refused",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    proc = ats(*args, env={"ATS_STATE_DIR": str(tmp_path), **env})
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_bounded_run_beats_and_stops_with_a_summary(db_url: str, tmp_path: Path) -> None:
    service_id = f"cli-{uuid.uuid4().hex[:8]}"
    proc = ats(
        "--no-events",
        "--duration",
        "2",
        "--heartbeat-interval",
        "0.5",
        "--service-id",
        service_id,
        env={
            "ATS_DATABASE_URL": db_url,
            "ATS_STATE_DIR": str(tmp_path),
            "ATS_EXCHANGE": "binance",
            "ATS_SYMBOLS": "BTC/USDT",
            "ATS_SIGNAL_TIMEFRAMES": "15m,1h",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert f"signal service {service_id} stopped (duration 2.0s reached)" in proc.stdout
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT symbols, timeframes FROM signals.service_heartbeats WHERE service_id = %s",
            (service_id,),
        ).fetchone()
    assert row == (["BTC/USDT"], ["15m", "1h"])
