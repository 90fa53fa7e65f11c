"""`ats serve ROLE`: one process of the production layout in the foreground (a container's
command), and `ats serve check ROLE`, its health check (a container's health check)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import load_settings
from ats_pipelines.deploy.layout import ROLES, http_ok, process_env, spec

app = typer.Typer(
    help="Run one process of the production layout (code-server, webserver, daemon).",
    no_args_is_help=True,
)
Opt = typer.Option


def _serve(role: str, bind: str) -> None:
    from ats_pipelines.cli.dagster_cmd import prepare_instance

    settings = run(load_settings)
    for line in run(lambda: prepare_instance(settings)):
        typer.echo(line)
    process = spec(settings, role, bind=bind)
    os.execvpe(process.argv[0], process.argv, process_env(settings))


BIND = Annotated[str, Opt(help="Address to listen on (0.0.0.0 in a container).")]


@app.command("code-server")
def code_server(bind: BIND = "127.0.0.1") -> None:
    """The code location's gRPC server (ATS_CODE_SERVER_PORT); runs are its children."""
    _serve("code-server", bind)


@app.command()
def webserver(bind: BIND = "127.0.0.1") -> None:
    """dagster-webserver on ATS_WEBSERVER_PORT (or PORT), loading the gRPC code server."""
    _serve("webserver", bind)


@app.command()
def daemon() -> None:
    """dagster-daemon: run queue, schedules, sensors, run monitoring and run retries."""
    _serve("daemon", "127.0.0.1")


@app.command()
def check(
    role: Annotated[str, typer.Argument(help=f"{', '.join(ROLES)} or stream")],
    metrics_port: Annotated[int, Opt(help="The stream's --metrics-port.")] = 9108,
) -> None:
    """Exit 0 if ROLE's process answers its health check (for container health checks)."""
    import subprocess

    settings = run(load_settings)
    if role == "stream":
        ok = http_ok(f"http://127.0.0.1:{metrics_port}/metrics")
    elif role in ROLES:
        process = spec(settings, role)
        if process.health_url:
            ok = http_ok(process.health_url)
        else:
            assert process.health is not None
            env = process_env(settings)
            ok = subprocess.run(process.health, env=env, capture_output=True).returncode == 0
    else:
        fail(f"unknown role {role!r}: one of {', '.join(ROLES)}, stream")
    if not ok:
        fail(f"{role} is not healthy")
    typer.echo(f"{role}: healthy")
