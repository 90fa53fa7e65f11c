"""`ats db backup` / `ats db restore`: a populated database dumped, restored into a fresh one on
the same server, and every table compared by row count and content checksum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ats_pipelines.config import ADMIN_DB_USER, load_settings
from ats_pipelines.db.connect import connection, replace_database
from ats_pipelines.db.fingerprint import fingerprint
from ats_pipelines.db.migrate import migrate
from ats_pipelines.db.sqlid import quote_ident
from tests.conftest import run_sync

pytestmark = pytest.mark.integration

POPULATE = [
    # 1m candles over 20 days: several chunks of the hypertable
    """INSERT INTO market.candles (exchange, symbol, timeframe, ts, open, high, low, close,
           volume, trade_count, source)
       SELECT 'binance', s, '1m', ts, 100 + i % 7, 110 + i % 7, 90, 100, i * 0.5, i, 'test'
       FROM unnest(ARRAY['BTC/USDT', 'ETH/USDT']) AS s,
            generate_series(0, 28799) AS i,
            LATERAL (SELECT timestamptz '2024-03-01' + i * interval '1 minute') AS t(ts)""",
    """INSERT INTO market.trades (exchange, symbol, ts, trade_id, price, amount, side, source)
       SELECT 'binance', 'BTC/USDT', timestamptz '2024-03-01' + i * interval '7 minutes',
              i::text, 100 + i * 0.01, 0.001 * (1 + i % 5),
              CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, 'test'
       FROM generate_series(1, 5000) AS i""",
    """INSERT INTO ml.retrain_queue (scope, reason, status, priority, started_at, completed_at,
           config)
       SELECT 'scope_' || i, 'test', 'completed', 1 + i % 5, now(), now(),
              jsonb_build_object('i', i, 'tf', '1h')
       FROM generate_series(1, 40) AS i""",
    """INSERT INTO ops.quarantine (dataset, source, rule, reason, payload, row_hash)
       VALUES ('candles', 'test', 'price_positive', 'close <= 0', '{"close": -1}', 'h1')""",
]


def ats(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


async def _migrate_and_populate(url: str) -> None:
    async with connection(url) as conn:
        await migrate(conn)
        for statement in POPULATE:
            await conn.execute(statement)


def restore_into(target: str, dump: Path, url: str) -> subprocess.CompletedProcess[str]:
    # TimescaleDB's restore procedure needs a superuser: the managed cluster's admin (the
    # platform's role is none)
    admin = load_settings({**os.environ, "ATS_ENV": "test"}).managed_url(ADMIN_DB_USER)
    return ats(
        "db",
        "restore",
        str(dump),
        "--into",
        target,
        "--admin-url",
        admin,
        env={"ATS_DATABASE_URL": url},
    )


@pytest.fixture(scope="module")
def populated(make_database) -> str:
    """A migrated database with hypertable rows over many chunks and rows in ml and ops."""
    url = make_database("ats_backup_src")
    run_sync(_migrate_and_populate(url))
    return url


async def _fingerprint(url: str):
    async with connection(url) as conn:
        return await fingerprint(conn)


async def _drop(url: str, name: str) -> None:
    async with connection(replace_database(url, "postgres")) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_backup_restores_every_table_identically(populated: str, tmp_path: Path) -> None:
    dump = tmp_path / "ats.dump"
    made = ats("db", "backup", str(dump), env={"ATS_DATABASE_URL": populated})
    assert made.returncode == 0, made.stderr
    target = f"ats_restored_{uuid.uuid4().hex[:8]}"
    try:
        done = restore_into(target, dump, populated)
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stdout
        restored = replace_database(populated, target)
        before, after = run_sync(_fingerprint(populated)), run_sync(_fingerprint(restored))
        assert before == after
        assert before["market.candles"].rows == 2 * 28800
        assert {"market.trades", "ml.retrain_queue", "ops.quarantine"} <= before.keys()

        async def still_a_working_hypertable() -> tuple[object, object]:
            async with connection(restored) as conn:
                chunks = await conn.fetchval(
                    "SELECT count(*) FROM timescaledb_information.chunks "
                    "WHERE hypertable_schema = 'market' AND hypertable_name = 'candles'"
                )
                new_id = await conn.fetchval(
                    "INSERT INTO ml.retrain_queue (scope, reason) VALUES ('after', 'restore') "
                    "RETURNING id"
                )
                return chunks, new_id

        chunks, new_id = run_sync(still_a_working_hypertable())
        assert (
            isinstance(chunks, int) and chunks > 1
        )  # chunks came back as chunks, not as one plain table
        assert new_id == 41  # identity sequences restored: writes continue without collisions
    finally:
        run_sync(_drop(populated, target))


def test_restore_refuses_a_backup_that_does_not_match_its_manifest(
    populated: str, tmp_path: Path
) -> None:
    dump = tmp_path / "ats.dump"
    assert ats("db", "backup", str(dump), env={"ATS_DATABASE_URL": populated}).returncode == 0
    manifest = dump.with_name(dump.name + ".manifest.json")
    doc = json.loads(manifest.read_text())
    doc["tables"]["market.trades"]["rows"] += 1
    manifest.write_text(json.dumps(doc))
    target = f"ats_restored_{uuid.uuid4().hex[:8]}"
    try:
        done = restore_into(target, dump, populated)
        assert done.returncode == 1
        assert "market.trades: 5000 rows, the backup holds 5001" in done.stderr
        assert "Traceback" not in done.stderr
        # an existing database is never overwritten unless asked
        again = restore_into(target, dump, populated)
        assert again.returncode == 1 and "--replace" in again.stderr
    finally:
        run_sync(_drop(populated, target))
