"""`ats migrate …`: move the legacy Parquet/Feather/JSON cache into TimescaleDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import Settings, load_settings
from ats_pipelines.db.connect import DatabaseUnavailable, connection
from ats_pipelines.migration import ledger
from ats_pipelines.migration.config import (
    MigrationConfig,
    MigrationConfigError,
    UserPattern,
    load_config,
)
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.loader import FileOutcome
from ats_pipelines.migration.markets import MarketListError, load_catalog
from ats_pipelines.migration.patterns import PatternError
from ats_pipelines.migration.rollback import rollback_target
from ats_pipelines.migration.runner import MigrationSetupError, RunResult, run_migration
from ats_pipelines.migration.summary import write_run_report

app = typer.Typer(
    help="Migrate the legacy Parquet cache into TimescaleDB (ledger, verify, rollback, archive).",
    no_args_is_help=True,
)
_ERRORS = (
    MigrationConfigError,
    MarketListError,
    PatternError,
    MigrationSetupError,
    FileNotFoundError,
)


def _config(settings: Settings, config_file: Path | None, **overrides: Any) -> MigrationConfig:
    path = config_file or settings.state_dir / "migration.toml"
    if config_file is not None and not config_file.exists():
        fail(f"config file {config_file} does not exist")
    try:
        return load_config(path).with_overrides(**overrides).check()
    except MigrationConfigError as exc:
        fail(str(exc))


class _Bar:
    """typer's (click's) progress bar over rows, labelled with files done."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.total_files = self.done = 0
        self.estimates: dict[Path, int] = {}
        self.reported: dict[Path, int] = {}

    def start(self, files: list[DiscoveredFile], estimates: dict[Path, int]) -> None:
        self.total_files = len(files)
        self.estimates = estimates
        length = max(1, sum(estimates.values()))
        self.bar = typer.progressbar(
            length=length, label=self._label(), show_pos=True, show_eta=True, file=None
        )
        self.bar.__enter__()

    def _label(self) -> str:
        return f"files {self.done}/{self.total_files}  rows"

    def rows(self, file: DiscoveredFile, rows: int) -> None:
        self.reported[file.path] = self.reported.get(file.path, 0) + rows
        if self.bar is not None:
            self.bar.update(rows)

    def file_done(self, outcome: FileOutcome) -> None:
        self.done += 1
        path = outcome.file.path
        rest = self.estimates.get(path, 0) - self.reported.get(path, 0)
        if self.bar is not None:
            self.bar.label = self._label()
            self.bar.update(max(0, rest))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _print_result(result: RunResult) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts().items())) or "no files"
    typer.echo(
        f"{'dry run' if result.dry_run else 'migration'} of {result.root}: {counts}; "
        f"unmatched={len(result.unmatched)}; rows read={result.rows_read:,} "
        f"inserted={result.rows_inserted:,}; {result.seconds:.1f}s"
    )
    for o in result.outcomes:
        if result.dry_run or o.status in ("failed", "error", "busy"):
            typer.echo(f"  {o.status:8} {o.file.relative}: {o.message}")
    for u in result.unmatched:
        typer.echo(f"  unmatched {u.relative}: {u.reason}")
    for path in result.report_paths:
        typer.echo(f"report: {path}")


@app.command("run")
def run_cmd(
    root: Annotated[Path, typer.Argument(help="Folder of the legacy cache (recursive).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check only.")] = False,
    archive: Annotated[Path | None, typer.Option(help="Move verified originals here.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Files in parallel.")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML settings (default .ats/migration.toml).")
    ] = None,
    markets: Annotated[
        Path | None, typer.Option(help="JSON market list, to resolve names like BTCUSDT.")
    ] = None,
    exchange: Annotated[
        str | None, typer.Option(help="Exchange of files whose path names none (default binance).")
    ] = None,
    naive_tz: Annotated[
        str | None, typer.Option(help="Time zone of naive timestamps (default UTC).")
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(help="Extra file-name regex with named groups; repeatable, tried first."),
    ] = None,
    max_rejected: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Refuse a file whose rejected rows exceed this share (default 0.01).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Discover, load, verify (and optionally archive) every cache file under ROOT."""
    settings = run(load_settings)
    config = _config(
        settings,
        config_file,
        markets_file=markets,
        default_exchange=exchange,
        naive_timezone=naive_tz,
        archive_dir=archive,
        workers=workers,
        max_rejected_fraction=max_rejected,
    )
    if pattern:
        config = config.with_overrides(
            patterns=tuple(UserPattern(p) for p in pattern) + config.patterns
        )
    bar = _Bar() if progress else None

    async def body() -> RunResult:
        catalog = load_catalog(config.markets_file)
        url = settings.database_url
        try:
            result = await run_migration(
                url,
                root,
                config,
                catalog,
                dry_run=dry_run,
                workers=workers,
                archive_dir=config.archive_dir,
                progress=bar,
            )
        finally:
            if bar is not None:
                bar.close()
        try:
            async with connection(url) as conn:
                await write_run_report(conn, result, settings.reports_dir)
        except DatabaseUnavailable:
            if not dry_run:
                raise
            await write_run_report(None, result, settings.reports_dir)
        return result

    try:
        result = run(body)
    except _ERRORS as exc:
        fail(str(exc))
    _print_result(result)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def status(
    root: Annotated[Path | None, typer.Option(help="Only files under this root.")] = None,
    only: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Print the migration ledger (one line per file version) and the unmatched files."""
    settings = run(load_settings)
    root_text = str(root.resolve()) if root else None

    async def body() -> tuple[list[Any], list[Any]]:
        async with connection(settings.database_url) as conn:
            try:
                rows = await ledger.list_rows(conn, root=root_text, status=only, limit=limit)
                unmatched = await ledger.list_unmatched(conn, root_text)
            except Exception as exc:  # an unmigrated schema says so
                raise MigrationSetupError(
                    f"cannot read the ledger ({exc}); run `ats db migrate`"
                ) from exc
        return rows, unmatched

    try:
        rows, unmatched = cast(tuple[list[Any], list[Any]], run(body))
    except MigrationSetupError as exc:
        fail(str(exc))
    header = (
        f"{'batch':>6} {'status':11} {'read':>10} {'inserted':>10} {'existing':>9} "
        f"{'dup':>6} {'quar':>6} {'symbol':16} {'tf':4} file / error"
    )
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r['batch_id']:>6} {r['status']:11} {r['rows_read']:>10,} {r['rows_inserted']:>10,} "
            f"{r['rows_existing']:>9,} {r['rows_duplicate']:>6,} {r['rows_quarantined']:>6,} "
            f"{(r['symbol'] or '-'):16} {(r['timeframe'] or '-'):4} "
            f"{r['relative_path'] or r['file_path']}" + (f"  [{r['error']}]" if r["error"] else "")
        )
    typer.echo(f"{len(rows)} ledger row(s)")
    for u in unmatched:
        typer.echo(f"unmatched: {u['relative_path']} ({u['root']}): {u['reason']}")


@app.command()
def rollback(
    target: Annotated[
        str, typer.Argument(help="Batch id, or the file's path (original, relative or archived).")
    ],
    reason: Annotated[str, typer.Option(help="Recorded in the ledger.")] = "rolled back on demand",
) -> None:
    """Remove the rows a file's batch inserted (rows from other sources stay)."""
    settings = run(load_settings)

    async def body() -> list[Any]:
        async with connection(settings.database_url) as conn:
            return await rollback_target(conn, target, reason)

    try:
        results = run(body)
    except LookupError as exc:
        fail(str(exc))
    if not results:
        typer.echo(f"nothing to roll back for {target} (already rolled back)")
    for r in results:
        typer.echo(
            f"rolled back batch {r.batch_id} ({r.file_path}): {r.rows_deleted:,} rows "
            f"and {r.quarantine_deleted:,} quarantined rows removed"
        )
        for path in r.reopened:
            typer.echo(
                f"  reopened {path}: it had found some of these rows present; migrate it again"
            )
