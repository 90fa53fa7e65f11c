"""`ats features …`: the Feast environment for the `feast` CLI, and SQL over the lake."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import load_settings

app = typer.Typer(
    help="Features: Feast environment and SQL over the Parquet lake.", no_args_is_help=True
)


@app.command()
def env() -> None:
    """Print the variables feature_repo/feature_store.yaml reads, as shell exports.

    Use: eval "$(uv run ats features env)"; then feast -c feature_repo feature-views list.
    """
    settings = run(load_settings)
    values = {
        "ATS_FEAST_REGISTRY": settings.feast_registry,
        "ATS_FEAST_ONLINE_STORE": settings.feast_online_store,
        "ATS_LAKE_DIR": str(settings.lake_dir),
        "FEAST_USAGE": "False",
    }
    for name, value in values.items():
        typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="SQL over the lake's views.")] = None,
    print_views: Annotated[
        bool, typer.Option("--print-views", help="Print the CREATE VIEW statements.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto (a table when it fits the terminal, else one record per block), "
            "table, records, csv or json.",
        ),
    ] = "auto",
) -> None:
    """Run DuckDB SQL over the lake (views features_1m…4h, labels_1m, candles_*, order_book_1m)."""
    from ats_pipelines.cli.tables import FORMATS, render
    from ats_pipelines.features.duck import connect
    from ats_pipelines.features.lake import Lake
    from ats_pipelines.features.views import register_views, view_statements

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if limit < 1:
        fail(f"--limit {limit}: give a positive number of rows")
    lake = Lake(run(load_settings).lake_dir)
    if print_views:
        for statement in view_statements(lake):
            typer.echo(statement)
        return
    if not query:
        fail('give a query, e.g. "SELECT symbol, count(*) FROM features_1m GROUP BY 1"')
    con = connect()
    try:
        views = register_views(con, lake)
        if not views:
            fail(
                f"the lake at {lake.root} has no files yet (materialise market_parquet and "
                "the features assets, or run make demo)"
            )
        try:
            frame = con.sql(query).pl()
        except Exception as exc:  # DuckDB's own message names the problem
            fail(f"{type(exc).__name__}: {exc}")
    finally:
        con.close()
    shown = frame.head(limit)
    typer.echo(render(shown, fmt))
    if fmt in ("auto", "table", "records") and frame.height > limit:
        typer.echo(f"({limit} of {frame.height} rows; --limit N for more)")
