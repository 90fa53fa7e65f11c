"""The ``ats`` command."""

from __future__ import annotations

import typer

from ats_pipelines.cli import (
    cache,
    dagster_cmd,
    db,
    emulator,
    features,
    migrate,
    prod,
    retrain,
    serve,
    signals,
    stream,
)
from ats_pipelines.cli.common import configure_logging, run
from ats_pipelines.config import load_settings

app = typer.Typer(
    help="ATS Pipelines: market data, features, training and signals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(cache.app, name="cache")
app.add_typer(dagster_cmd.app, name="dagster")
app.add_typer(migrate.app, name="migrate")
app.add_typer(retrain.app, name="retrain")
app.add_typer(features.app, name="features")
app.add_typer(prod.app, name="prod")
app.add_typer(serve.app, name="serve")
app.add_typer(signals.app, name="signals")
app.command("emulator")(emulator.emulator)
app.command("stream")(stream.stream)


@app.command()
def demo() -> None:
    """Run the platform end to end on the local server and print a summary."""
    from ats_pipelines.cli.common import demo_logging
    from ats_pipelines.demo import run_demo

    demo_logging()
    settings = run(load_settings)
    run(lambda: run_demo(settings, typer.echo))


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    """ATS Pipelines command line."""
    configure_logging(verbose)


if __name__ == "__main__":
    app()
