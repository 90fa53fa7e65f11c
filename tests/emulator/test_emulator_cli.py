"""``ats emulator``: every option documented, non-loopback hosts refused, and a real run."""

from __future__ import annotations

import inspect
import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from typer.testing import CliRunner

from ats_pipelines.cli.emulator import emulator
from ats_pipelines.cli.main import app

runner = CliRunner()


def test_help_documents_every_option() -> None:
    result = runner.invoke(app, ["emulator", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for name in inspect.signature(emulator).parameters:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "loopback" in text and "Fault:" in text


def test_non_loopback_host_is_refused() -> None:
    result = runner.invoke(app, ["emulator", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "loopback only" in result.output


def test_missing_data_directory_is_refused() -> None:
    result = runner.invoke(app, ["emulator", "--data", "/nonexistent/testdata"])
    assert result.exit_code == 1 and "is not a directory" in result.output


def test_the_command_serves_binance_on_loopback_until_terminated() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ats_pipelines.cli.main",
            "emulator",
            "--port",
            "0",
            "--symbols",
            "3",
            "--start",
            "2024-05-01T00:00:00Z",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"rest=(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with urllib.request.urlopen(match.group(1) + "/api/v3/exchangeInfo") as resp:
            info = json.load(resp)
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        with urllib.request.urlopen(match.group(1) + "/api/v3/time") as resp:
            assert json.load(resp)["serverTime"] >= 1_714_521_600_000
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--weight-limit", "-1"], "--weight-limit -1"),
        (["--weight-window", "0"], "--weight-window 0"),
        (["--pong-timeout", "0"], "--pong-timeout 0"),
        (["--ping-interval", "-5"], "--ping-interval -5"),
    ],
)
def test_bad_rate_and_connection_limits_are_refused_in_one_line(
    args: list[str], named: str
) -> None:
    result = runner.invoke(app, ["emulator", *args])
    assert result.exit_code == 1
    assert named in result.output and "Traceback" not in result.output
