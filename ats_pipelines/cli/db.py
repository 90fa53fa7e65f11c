"""`ats db …`: the local cluster and the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import ADMIN_DB_USER, Settings, load_settings
from ats_pipelines.db.backup import backup, manifest_path, restore
from ats_pipelines.db.cluster import LocalCluster
from ats_pipelines.db.connect import connection, database_name, describe_url
from ats_pipelines.db.migrate import MigrationReport, migrate
from ats_pipelines.db.sqlid import quote_ident

app = typer.Typer(
    help="Manage the database: the local cluster under .ats/ and the schema.", no_args_is_help=True
)


def _external_note(settings: Settings) -> str:
    where = describe_url(settings.database_url)
    return f"{settings.database_url_variable} is set: using the external server {where}"


def ensure_up(settings: Settings) -> list[str]:
    """Start the managed cluster and create the database; returns what it did, a line each."""
    if not settings.managed_database:
        return [_external_note(settings) + "; nothing to start"]
    cluster = LocalCluster(settings)
    lines = []
    if cluster.init():
        lines.append(f"initialised a cluster in {cluster.data_dir}")
    started = cluster.start()
    lines.append(
        f"{'started' if started else 'already running:'} PostgreSQL {cluster.install.version} "
        f"on 127.0.0.1:{settings.db_port} (timescaledb "
        f"{'preloaded' if cluster.install.has_timescaledb else 'not installed'})"
    )
    if cluster.create_database(settings.db_name):
        lines.append(f"created database {settings.db_name}")
    return lines


@app.command()
def up() -> None:
    """Start the local cluster (initialising it on first use) and create the database."""
    settings = run(load_settings)
    for line in run(lambda: ensure_up(settings)):
        typer.echo(line)


@app.command()
def down() -> None:
    """Stop the local cluster."""
    settings = run(load_settings)
    if not settings.managed_database:
        typer.echo(_external_note(settings) + "; nothing to stop")
        return
    stopped = run(lambda: LocalCluster(settings).stop())
    typer.echo("stopped PostgreSQL" if stopped else "PostgreSQL was not running")


@app.command()
def status() -> None:
    """Say whether the server is reachable, its edition, and what the schema holds."""
    settings = run(load_settings)

    async def body() -> None:
        async with connection(settings.database_url, timeout=5) as conn:
            version = await conn.fetchval("SHOW server_version")
            ts = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            )
            lic = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
            applied = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = 'ats_meta' AND table_name = 'schema_migrations'"
            )
            n = (
                await conn.fetchval("SELECT count(*) FROM ats_meta.schema_migrations")
                if applied
                else 0
            )
        typer.echo(f"server: {describe_url(settings.database_url)} PostgreSQL {version}")
        typer.echo(f"timescaledb: {ts or 'not installed in this database'} license={lic or '-'}")
        typer.echo(f"migrations recorded: {n}")

    if settings.managed_database:
        state = "running" if LocalCluster(settings).is_running() else "stopped"
        typer.echo(f"local cluster: {state} ({settings.pg_dir})")
    run(body)


@app.command()
def url(show_password: bool = typer.Option(False, help="Print the password too.")) -> None:
    """Print the database URL everything uses (password masked unless asked)."""
    settings = run(load_settings)
    value = settings.database_url
    parts = urlsplit(value)
    if parts.password and not show_password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        value = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    typer.echo(value)


def print_report(report: MigrationReport) -> None:
    ts = f" (timescaledb {report.timescaledb_version})" if report.timescaledb_version else ""
    typer.echo(f"edition: {report.edition}{ts}")
    for name in report.applied:
        typer.echo(f"applied: {name}")
    for name, fallback in report.degradations.items():
        typer.echo(f"degraded: {name} -> {fallback}")
    if not report.applied:
        typer.echo(f"up to date: {len(report.unchanged)} migration(s) already recorded")


async def migrate_database(settings: Settings) -> MigrationReport:
    async with connection(settings.database_url) as conn:
        return await migrate(conn)


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply the numbered files in sql/ that have not been applied yet."""
    settings = run(load_settings)
    print_report(run(lambda: migrate_database(settings)))


@app.command()
def reset(yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Drop and recreate the local database, then migrate it (local cluster only)."""
    settings = run(load_settings)
    if not settings.managed_database:
        fail(f"refusing to reset an external server named by {settings.database_url_variable}")
    if not yes:
        typer.confirm(f"Drop database {settings.db_name} and everything in it?", abort=True)

    async def body() -> MigrationReport:
        async with connection(settings.database_url_for("postgres")) as conn:
            await conn.execute(
                # our own sessions: TimescaleDB's workers (superuser) stop with the database
                "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() "
                "AND pg_has_role(usesysid, 'MEMBER')",
                settings.db_name,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(settings.db_name)}")
            await conn.execute(f"CREATE DATABASE {quote_ident(settings.db_name)}")
        return await migrate_database(settings)

    print_report(run(body))


@app.command("backup")
def backup_cmd(
    path: Annotated[Path, typer.Argument(help="Dump file to write (pg_dump custom format).")],
) -> None:
    """Dump the platform's database (TimescaleDB-aware) with a manifest of every table."""
    settings = run(load_settings)
    manifest = run(lambda: backup(settings.database_url, path))
    rows = sum(t.rows for t in manifest.tables.values())
    typer.echo(
        f"wrote {path} and {manifest_path(path).name}: {len(manifest.tables)} tables, "
        f"{rows} rows, timescaledb {manifest.timescaledb or '-'}"
    )


def _restore_url(settings: Settings) -> str:
    """TimescaleDB's restore procedure needs a superuser: the managed cluster's admin."""
    if settings.managed_database:
        return settings.managed_url(ADMIN_DB_USER)
    return settings.database_url


@app.command("restore")
def restore_cmd(
    path: Annotated[Path, typer.Argument(help="Dump written by `ats db backup`.")],
    into: str | None = typer.Option(None, help="Target database (default: ATS_DB_NAME's)."),
    replace: bool = typer.Option(False, "--replace", help="Drop the target database first."),
    admin_url: str | None = typer.Option(
        None, help="Connect as this role (the cluster owner); default: the platform's URL."
    ),
) -> None:
    """Restore a backup into a fresh database and verify every table's rows and checksum."""
    settings = run(load_settings)
    target = into or database_name(settings.database_url)
    manifest = run(
        lambda: restore(admin_url or _restore_url(settings), path, target, replace=replace)
    )
    typer.echo(
        f"restored {path} into {target}: {len(manifest.tables)} tables verified "
        "(rows and checksums match the manifest)"
    )
