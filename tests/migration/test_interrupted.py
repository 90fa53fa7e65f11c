"""A migration killed mid-file (SIGKILL, in a child process) leaves nothing partial behind."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from ats_pipelines.db.connect import connection, database_name
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.runner import run_migration

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The child loads one 13,681-row file in 1,000-row chunks and kills itself with SIGKILL once
# 3,000 rows have been written: no cleanup code of ours can run.
CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import catalog_of
from ats_pipelines.migration.runner import run_migration

class Killer:
    written = 0
    def start(self, files, estimates): pass
    def rows(self, file, rows):
        self.written += rows
        if self.written >= 3000:
            os.kill(os.getpid(), signal.SIGKILL)
    def file_done(self, outcome): pass

asyncio.run(run_migration(sys.argv[1], Path(sys.argv[2]), MigrationConfig(chunk_rows=1000),
                          catalog_of(["ETH/USDT"], "binance"), progress=Killer()))
"""
ROWS = 13_681
PROJECT = Path(__file__).resolve().parents[2]


async def _series(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT ts) AS d FROM market.candles "
        "WHERE symbol = 'ETH/USDT' AND timeframe = '1m'"
    )
    assert row is not None
    return row["n"], row["d"]


async def _wait_for_backends_to_go(conn: asyncpg.Connection, url: str) -> None:
    """The server ends the killed client's session (and its transaction) when it notices."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        others = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            database_name(url),
        )
        if others == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the killed client's session did not end")


async def test_killed_mid_file_then_rerun(
    fresh_db: str, testdata: Path, tmp_path: Path, catalog: MarketCatalog
) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copy(testdata / "freqtrade" / "UNITTEST_BTC-1m.json", root / "ETH_USDT-1m.json")
    project = PROJECT
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, fresh_db, str(root)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    async with connection(fresh_db) as conn:
        await _wait_for_backends_to_go(conn, fresh_db)
        ledger = await conn.fetchrow("SELECT batch_id, status, attempts FROM ops.migration_ledger")
        assert ledger is not None
        assert (ledger["status"], ledger["attempts"]) == ("loading", 1)
        assert await _series(conn) == (0, 0)  # 3,000 rows had been written, none survived

    result = await run_migration(fresh_db, root, MigrationConfig(chunk_rows=1000), catalog)
    [outcome] = result.outcomes
    assert outcome.status == "verified", outcome.message
    assert outcome.batch_id == ledger["batch_id"]
    async with connection(fresh_db) as conn:
        assert await _series(conn) == (ROWS, ROWS)
        row = await conn.fetchrow(
            "SELECT status, attempts, rows_inserted FROM ops.migration_ledger WHERE batch_id = $1",
            outcome.batch_id,
        )
        assert row is not None
        assert (row["status"], row["attempts"], row["rows_inserted"]) == ("verified", 2, ROWS)


async def test_crash_between_load_and_verification(
    fresh_db: str, testdata: Path, tmp_path: Path, catalog: MarketCatalog
) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copy(testdata / "freqtrade" / "UNITTEST_BTC-1m.json", root / "ETH_USDT-1m.json")
    config = MigrationConfig(chunk_rows=5000)
    first = await run_migration(fresh_db, root, config, catalog)
    batch = first.outcomes[0].batch_id
    async with connection(fresh_db) as conn:
        # what a process that died after the commit but before verifying leaves behind
        await conn.execute(
            "UPDATE ops.migration_ledger SET status = 'loaded' WHERE batch_id = $1", batch
        )
    second = await run_migration(fresh_db, root, config, catalog)
    assert second.outcomes[0].status == "verified"
    async with connection(fresh_db) as conn:
        assert await _series(conn) == (ROWS, ROWS)
        inserted = await conn.fetchval(
            "SELECT rows_inserted FROM ops.migration_ledger WHERE batch_id = $1", batch
        )
        assert inserted == ROWS  # removed and loaded again under the same batch id
