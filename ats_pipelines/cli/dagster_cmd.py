"""`ats dagster …`: the Dagster instance (storage database, DAGSTER_HOME, the UI)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import DEFAULT_WEBSERVER_PORT, Settings, load_settings, project_root
from ats_pipelines.db.connect import connection, database_name
from ats_pipelines.db.sqlid import quote_ident

app = typer.Typer(
    help="The Dagster instance: storage database, DAGSTER_HOME and the UI.", no_args_is_help=True
)
DAGSTER_DB = "ats_dagster"
NO_TELEMETRY = {
    "DAGSTER_TELEMETRY_DISABLED": "1",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
}


def dagster_home(settings: Settings) -> Path:
    return settings.state_dir / "dagster"


def dagster_storage_url(settings: Settings) -> str:
    """SQLAlchemy URL of Dagster's storage. The driver is named: SQLAlchemy 2.1 defaults to
    psycopg 3, with which dagster-postgres' ``NOTIFY run_events, %s`` fails to bind."""
    url = settings.database_url_for(DAGSTER_DB)
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


async def prepare_instance(settings: Settings) -> list[str]:
    """Create Dagster's storage database and DAGSTER_HOME with dagster.yaml (idempotent; what
    every process of the production layout needs, in a container too)."""
    lines = []
    async with connection(settings.database_url_for(database_name(settings.database_url))) as c:
        exists = await c.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DAGSTER_DB)
        if not exists:
            try:
                await c.execute(f"CREATE DATABASE {quote_ident(DAGSTER_DB)}")
                lines.append(f"created database {DAGSTER_DB} for Dagster's runs and events")
            except asyncpg.DuplicateDatabaseError:
                pass  # the layout's processes start together; another one created it first
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    # as above, a sibling process may have linked it in the meantime
    with contextlib.suppress(FileExistsError):
        if not link.exists():
            link.symlink_to(project_root() / "dagster.yaml")
    return lines


async def prepare(settings: Settings) -> list[str]:
    """:func:`prepare_instance`, and the .env file Dagster's CLI reads, so `dagster …` commands
    find the instance from a plain shell."""
    lines = await prepare_instance(settings)
    home = dagster_home(settings)
    env_file = project_root() / ".env"
    wanted = {"ATS_DAGSTER_PG_URL": dagster_storage_url(settings), **NO_TELEMETRY}
    current = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                current[key.strip()] = value.strip()
    if any(current.get(k) != v for k, v in wanted.items()):
        current.update(wanted)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in current.items()))
        env_file.chmod(0o600)
        lines.append("wrote .env (Dagster storage URL, telemetry off) for the dagster CLI")
    lines.append(f"DAGSTER_HOME={home}")
    return lines


@app.command("prepare")
def prepare_cmd() -> None:
    """Create Dagster's storage database and DAGSTER_HOME (idempotent)."""
    settings = run(load_settings)
    for line in run(lambda: prepare(settings)):
        typer.echo(line)


def _ui_address(host: str, port: str) -> tuple[str, int]:
    """``--host``/``--port`` checked: one line naming the option for a bad value."""
    try:
        number = int(port)
    except ValueError:
        fail(f"--port {port!r} is not a port number (1-65535)")
    if not 0 < number < 65536:
        fail(f"--port {number} is out of range (1-65535)")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            fail(f"--host {host!r} is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for all)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, number))
        except OSError as exc:
            fail(f"--host {host} --port {number}: cannot listen there ({exc.strerror})")
    return host, number


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address the webserver listens on.")] = "127.0.0.1",
    port: Annotated[str, typer.Option(help="Port the webserver listens on.")] = str(
        DEFAULT_WEBSERVER_PORT
    ),
) -> None:
    """Start `dagster dev -w workspace.yaml` (webserver and daemon) with what the profile needs:
    the database (migrated) and the cache, and the exchange emulator as the local exchange when
    ATS_EXCHANGE_URL is not set (never in production). Ctrl-C stops it all."""
    from ats_pipelines.cache.server import CacheServerError
    from ats_pipelines.deploy.local import local_services

    address, number = _ui_address(host, port)
    settings = run(load_settings)
    with contextlib.ExitStack() as stack:
        try:
            services = run(lambda: stack.enter_context(local_services(settings)))
        except (CacheServerError, OSError) as exc:  # Redis or the emulator could not start
            fail(str(exc))
        for line in services.lines:
            typer.echo(line)
        env = {
            **os.environ,
            **NO_TELEMETRY,
            **services.env,
            "DAGSTER_HOME": str(dagster_home(settings)),
            "ATS_DAGSTER_PG_URL": dagster_storage_url(settings),
        }
        exe = shutil.which("dagster") or "dagster"
        argv = [exe, "dev", "-w", "workspace.yaml", "-h", address, "-p", str(number)]
        typer.echo(f"Dagster UI: http://{address}:{number} (Ctrl-C stops it)")
        proc = subprocess.Popen(argv, env=env, cwd=project_root())
        # Ctrl-C reaches `dagster dev` from the terminal itself (same process group); a SIGTERM
        # sent to this process is passed on. Either way we wait for it, then stop the emulator.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        code = proc.wait()
    raise typer.Exit(code)
