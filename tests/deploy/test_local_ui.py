"""`make ui` / `ats dagster ui` with nothing started by hand: from a fresh state directory it
brings up the database, the cache and — the local profile having no exchange URL — the
project's exchange emulator, says so, and a candles_1m partition launched through the
webserver's GraphQL API (as the UI does) succeeds. The production profile starts no emulator."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ats_pipelines.config import Settings, load_settings
from ats_pipelines.deploy.graphql import DagsterWebClient, GraphQLError
from ats_pipelines.deploy.local import exchange_origin, local_services, wants_emulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]
UNSET = ("ATS_DATABASE_URL", "ATS_REDIS_URL", "ATS_EXCHANGE_URL", "ATS_EXCHANGE_ORIGIN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ats(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def fresh_env(settings: Settings) -> Iterator[dict[str, str]]:
    """A state directory of its own (new cluster, new Redis, new Dagster storage), on ports
    of its own; under the project's state dir so the cluster's OS user can reach it."""
    state = settings.state_dir / f"ui-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env |= {
        "ATS_ENV": "local",
        "ATS_STATE_DIR": str(state),
        "ATS_DB_PORT": str(_free_port()),
        "ATS_REDIS_PORT": str(_free_port()),
        "DAGSTER_TELEMETRY_DISABLED": "1",
    }
    try:
        yield env
    finally:
        ats(env, "db", "down")
        ats(env, "cache", "down")
        shutil.rmtree(state, ignore_errors=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # what Ctrl-C / a service manager does
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: ats, dagster dev, children
            proc.wait(30)


def _launch_when_loaded(web: DagsterWebClient, proc: subprocess.Popen[str], **kw: object) -> str:
    deadline = time.monotonic() + 420
    while True:
        assert proc.poll() is None, "ats dagster ui exited early"
        try:
            return web.launch("candles_1m_job", **kw)  # type: ignore[arg-type]
        except GraphQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)  # the webserver or the code location is still loading


@pytest.mark.timeout(1800)  # a new cluster, the UI's start and a queued run, on a busy machine
def test_make_ui_brings_up_everything_and_a_partition_materialises(
    fresh_env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    log = (tmp_path / "ui.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ats_pipelines.cli.main", "dagster", "ui", "--port", str(port)],
        env=fresh_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        web = DagsterWebClient(port)
        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        tags = {
            "dagster/partition": f"{day}|BTC/USDT",
            "dagster/partition/date": day,
            "dagster/partition/symbol": "BTC/USDT",
        }
        run_id = _launch_when_loaded(web, proc, tags=tags)
        status = web.wait(run_id, {"SUCCESS", "FAILURE", "CANCELED"}, 600)
        messages = web.messages(run_id)
        assert status == "SUCCESS", "\n".join(messages[-30:])
        assert any(
            "exchange: the project's exchange emulator at http://127.0.0.1:" in m for m in messages
        )
        assert any("event=candles_1m" in m and "inserted=1440" in m for m in messages), messages
        origin = web.resource_config("exchange")["origin"]
        assert "exchange emulator" in origin and "started by `ats dagster ui`" in origin
    finally:
        _stop(proc)
        log.seek(0)
        output = log.read()
    # the UI's own log says what it started
    assert "started PostgreSQL" in output and "Redis" in output, output[:3000]
    assert "exchange: the project's exchange emulator at http://127.0.0.1:" in output
    assert f"Dagster UI: http://127.0.0.1:{port}" in output
    assert "does not match the name" not in output  # the code location is ats_pipelines


def test_prod_starts_no_emulator_and_an_exchange_url_is_used_as_given(
    make_database, redis_url: str, settings: Settings
) -> None:
    db_url = make_database("ats_ui")
    base = {"ATS_DATABASE_URL": db_url, "ATS_REDIS_URL": redis_url}
    prod = load_settings({**base, "ATS_ENV": "prod", "ATS_STATE_DIR": str(settings.state_dir)})
    with local_services(prod, {**base, "ATS_ENV": "prod"}) as services:
        assert services.emulator is None and services.env == {}
        assert services.lines[-1] == (
            "exchange: the exchange's own hosts (production profile) (no emulator started)"
        )
    assert not wants_emulator("prod", {})
    given = {**base, "ATS_EXCHANGE_URL": "http://127.0.0.1:9"}
    local = load_settings({**given, "ATS_STATE_DIR": str(settings.state_dir)})
    with local_services(local, given) as services:
        assert services.emulator is None and services.env == {}
    assert exchange_origin("local", given) == "ATS_EXCHANGE_URL (http://127.0.0.1:9)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "web"], "error: --port 'web' is not a port number (1-65535)"),
        (["--port", "70000"], "error: --port 70000 is out of range (1-65535)"),
        (["--host", "my laptop"], "error: --host 'my laptop' is not an IP address"),
    ],
)
def test_bad_host_or_port_is_one_line(args: list[str], expected: str) -> None:
    done = ats(dict(os.environ), "dagster", "ui", *args, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(expected), done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = ats(dict(os.environ), "dagster", "ui", "--port", str(port), timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen there")
    assert "Traceback" not in done.stdout + done.stderr
