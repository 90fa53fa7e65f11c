"""`ats dagster …`: the Dagster instance (storage database, DAGSTER_HOME, the UI)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import asyncpg
import typer

from ats_pipelines.cli.common import run
from ats_pipelines.config import Settings, load_settings, project_root
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


@app.command()
def ui() -> None:
    """Start `dagster dev -w workspace.yaml` (webserver and daemon) against the local server."""
    settings = run(load_settings)
    run(lambda: prepare(settings))
    env = {
        **os.environ,
        **NO_TELEMETRY,
        "DAGSTER_HOME": str(dagster_home(settings)),
        "ATS_DAGSTER_PG_URL": dagster_storage_url(settings),
    }
    exe = shutil.which("dagster") or "dagster"
    os.chdir(project_root())
    os.execvpe(exe, [exe, "dev", "-w", "workspace.yaml"], env)
