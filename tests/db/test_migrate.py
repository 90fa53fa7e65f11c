"""The migration runner against real servers: TimescaleDB (apache) and plain PostgreSQL."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import (
    MigrationError,
    applied_migrations,
    default_sql_dir,
    load_migrations,
    migrate,
    supports,
)


async def test_full_schema_applies_on_timescaledb(migration_report) -> None:
    url, report = migration_report
    assert report.edition in ("apache", "timescale")
    assert report.timescaledb_version
    names = [m.filename for m in load_migrations()]
    assert report.applied + report.skipped == names or set(report.applied) | set(
        report.skipped
    ) == set(names)
    async with connection(url) as conn:
        hypertables = {
            r[0]
            for r in await conn.fetch(
                "SELECT hypertable_schema || '.' || hypertable_name "
                "FROM timescaledb_information.hypertables"
            )
        }
        rows = await applied_migrations(conn)
    assert {"market.candles", "market.trades", "market.order_book_snapshots"} <= hypertables
    assert [r["filename"] for r in rows] == names
    if report.edition == "apache":
        assert "020_compression_policies.timescale.sql" in report.skipped
        assert "retention" in report.degradations["020_compression_policies.timescale.sql"]


async def test_second_run_changes_nothing(migration_report) -> None:
    url, _ = migration_report
    async with connection(url) as conn:
        before = [tuple(r) for r in await applied_migrations(conn)]
        report = await migrate(conn)
        after = [tuple(r) for r in await applied_migrations(conn)]
    assert report.applied == [] and report.skipped == []
    assert before == after


def _copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(default_sql_dir(), target)
    return target


async def test_edited_applied_file_is_refused(make_database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    url = make_database()
    async with connection(url) as conn:
        await migrate(conn, sql_dir)
        edited = sql_dir / "003_ml.sql"
        edited.write_text(edited.read_text() + "\n-- a later edit\n")
        with pytest.raises(MigrationError, match=r"003_ml\.sql was changed after it was applied"):
            await migrate(conn, sql_dir)


async def test_new_file_is_applied_once(make_database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    url = make_database()
    async with connection(url) as conn:
        await migrate(conn, sql_dir)
        (sql_dir / "900_extra.sql").write_text("CREATE TABLE ops.extra (id int PRIMARY KEY);\n")
        first = await migrate(conn, sql_dir)
        second = await migrate(conn, sql_dir)
        assert first.applied == ["900_extra.sql"]
        assert second.applied == []
        assert await conn.fetchval("SELECT to_regclass('ops.extra') IS NOT NULL")


async def test_failing_file_leaves_nothing_half_applied(make_database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / "900_broken.sql").write_text(
        "CREATE TABLE ops.half (id int);\nSELECT no_such_function();\n"
    )
    url = make_database()
    async with connection(url) as conn:
        with pytest.raises(MigrationError, match=r"900_broken\.sql failed"):
            await migrate(conn, sql_dir)
        assert await conn.fetchval("SELECT to_regclass('ops.half') IS NULL")
        assert not await conn.fetchval(
            "SELECT count(*) FROM ats_meta.schema_migrations WHERE filename = '900_broken.sql'"
        )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1_short.sql", "file name must look like"),
        ("002_duplicate_version.sql", "version 002 is also used"),
        ("900_needs_ts.timescaledb.sql", "must name its '-- fallback:'"),
    ],
)
def test_malformed_migration_files_are_named(tmp_path: Path, name: str, message: str) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=message) as info:
        load_migrations(sql_dir)
    assert name in str(info.value) or "002" in str(info.value)


@pytest.mark.parametrize(
    ("edition", "requires", "expected"),
    [
        ("postgresql", None, True),
        ("postgresql", "timescaledb", False),
        ("apache", "timescaledb", True),
        ("apache", "timescale", False),
        ("timescale", "timescale", True),
    ],
)
def test_edition_requirements(edition: str, requires: str | None, expected: bool) -> None:
    assert supports(edition, requires) is expected


async def test_plain_postgresql_degrades_and_logs_once(
    plain_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ats_pipelines.db.migrate")
    async with connection(plain_postgres_url) as conn:
        report = await migrate(conn)
        again = await migrate(conn)
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'market'"
        )
    edition_specific = {m.filename for m in load_migrations() if m.requires}
    assert report.edition == "postgresql"
    assert "010_hypertables.timescaledb.sql" in edition_specific
    assert set(report.skipped) == edition_specific
    assert not set(report.applied) & edition_specific
    assert again.skipped == [] and again.applied == []
    assert tables is not None and tables >= 8
    degradations = [r for r in caplog.records if "edition_degradation" in r.getMessage()]
    assert len(degradations) == len(edition_specific)  # once per file, not once per run
