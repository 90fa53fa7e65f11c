"""`ats cache …`: the hot cache's Redis."""

from __future__ import annotations

import typer

from ats_pipelines.cache.server import CacheServerError, ensure_redis, stop_redis
from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import load_settings

app = typer.Typer(help="The hot cache (Redis): start, stop.", no_args_is_help=True)


@app.command()
def up() -> None:
    """Start the project's Redis (port ATS_REDIS_PORT, default 56379) unless it runs."""
    settings = run(load_settings)
    try:
        typer.echo(ensure_redis(settings))
    except CacheServerError as exc:
        fail(str(exc))


@app.command()
def down() -> None:
    """Stop the project's Redis."""
    settings = run(load_settings)
    typer.echo("stopped Redis" if stop_redis(settings) else "Redis was not running")
