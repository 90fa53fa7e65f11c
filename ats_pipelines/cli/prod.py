"""`ats prod …`: the production process layout on this machine (the reference deployment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import Settings, load_settings
from ats_pipelines.deploy.graphql import GraphQLError
from ats_pipelines.deploy.supervisor import SupervisorError

app = typer.Typer(
    help="The production layout locally: gRPC code server, webserver, daemon, streaming runs.",
    no_args_is_help=True,
)
Opt = typer.Option


async def _prepare(settings: Settings) -> None:
    from ats_pipelines.cache.server import ensure_redis
    from ats_pipelines.cli.dagster_cmd import prepare
    from ats_pipelines.cli.db import ensure_up, migrate_database

    for line in ensure_up(settings):
        typer.echo(line)
    report = await migrate_database(settings)
    typer.echo(f"schema: {len(report.applied)} migration(s) applied, edition {report.edition}")
    await prepare(settings)
    typer.echo(ensure_redis(settings))


def _guarded(body: Callable[[], object]) -> None:
    try:
        body()
    except (SupervisorError, GraphQLError) as exc:
        fail(str(exc))


@app.command()
def up(
    shards: Annotated[int, Opt(min=0, help="Streaming runs to start (0: none).")] = 1,
    timeout: Annotated[float, Opt(help="Seconds each process may take to become healthy.")] = 180,
) -> None:
    """Start the database, cache, code server, webserver, daemon and the streaming runs."""
    from ats_pipelines.deploy.prod import start_processes, start_streams

    settings = run(load_settings)
    run(lambda: _prepare(settings))
    _guarded(lambda: start_processes(settings, typer.echo, timeout))
    if shards:
        _guarded(lambda: start_streams(settings, shards, typer.echo, timeout))


@app.command()
def down(
    timeout: Annotated[float, Opt(help="Seconds the streaming runs may take to flush.")] = 120,
) -> None:
    """Terminate the streaming runs (flushed), then stop daemon, webserver and code server."""
    from ats_pipelines.deploy.prod import stop_processes, stop_streams
    from ats_pipelines.deploy.supervisor import Supervisor

    settings = run(load_settings)
    if Supervisor(settings).pid("webserver") is not None:
        _guarded(lambda: stop_streams(settings, typer.echo, timeout))
    stop_processes(settings, typer.echo)


@app.command()
def status() -> None:
    """Each process's pid and health, and the streaming runs; exit code 1 if any is unhealthy."""
    from ats_pipelines.deploy.prod import status as layout_status

    settings = run(load_settings)
    states, streams = layout_status(settings)
    for state in states:
        health = "healthy" if state.healthy else "DOWN" if state.pid is None else "unhealthy"
        typer.echo(f"{state.role}: {health}" + (f" (pid {state.pid})" if state.pid else ""))
    for line in streams:
        typer.echo(line)
    if not all(s.healthy for s in states):
        raise typer.Exit(1)
