"""The ``ats`` command."""

from __future__ import annotations

import typer

from ats_pipelines.cli import dagster_cmd, db, migrate
from ats_pipelines.cli.common import configure_logging

app = typer.Typer(help="ATS Pipelines: market data, features, training and signals.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(db.app, name="db")
app.add_typer(dagster_cmd.app, name="dagster")
app.add_typer(migrate.app, name="migrate")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    """ATS Pipelines command line."""
    configure_logging(verbose)


if __name__ == "__main__":
    app()
