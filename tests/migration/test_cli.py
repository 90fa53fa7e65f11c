"""`ats migrate run|status|rollback` as a person runs them, against a fresh database."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ats_pipelines.cli.main import app
from ats_pipelines.db.connect import connection

pytestmark = pytest.mark.integration


def _count(url: str, sql: str) -> int:
    async def body() -> int:
        async with connection(url) as conn:
            value = await conn.fetchval(sql)
            assert isinstance(value, int)
            return value

    return asyncio.run(body())


@pytest.fixture
def small_cache(testdata: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    (root / "binance" / "ETH_BTC").mkdir(parents=True)
    shutil.copy(testdata / "freqtrade" / "XRP_ETH-5m.feather", root / "XRP_ETH-5m.feather")
    shutil.copy(
        testdata / "freqtrade" / "ETH_BTC-5m.feather", root / "binance" / "ETH_BTC" / "5m.feather"
    )
    (root / "old-stuff.feather").write_bytes(b"not even feather")
    return root


def _invoke(args: list[str], url: str, state: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, args, env={"ATS_DATABASE_URL": url, "ATS_STATE_DIR": str(state)}
    )
    return result.exit_code, result.output


def test_dry_run_writes_nothing(fresh_db: str, small_cache: Path, tmp_path: Path) -> None:
    code, out = _invoke(
        ["migrate", "run", str(small_cache), "--dry-run"], fresh_db, tmp_path / "state"
    )
    assert code == 0, out
    assert "would load 706 rows" in out and "would load 5760 rows" in out
    assert "unmatched old-stuff.feather: file name matches no pattern" in out
    assert _count(fresh_db, "SELECT count(*) FROM ops.migration_ledger") == 0
    assert _count(fresh_db, "SELECT count(*) FROM market.candles") == 0
    reports = sorted((tmp_path / "state" / "reports" / "migration").glob("dry-run-*"))
    assert [p.suffix for p in reports] == [".html", ".md"]
    assert "would load" in reports[1].read_text()


def test_run_archive_status_rollback(fresh_db: str, small_cache: Path, tmp_path: Path) -> None:
    state, archive = tmp_path / "state", tmp_path / "archive"
    code, out = _invoke(
        ["migrate", "run", str(small_cache), "--archive", str(archive), "--workers", "2"],
        fresh_db,
        state,
    )
    assert code == 0, out
    assert "archived=2" in out and "inserted=6,466" in out
    # verified originals moved, never deleted; the unmatched file stays where it was
    assert (archive / "binance" / "ETH_BTC" / "5m.feather").is_file()
    assert not (small_cache / "XRP_ETH-5m.feather").exists()
    assert (small_cache / "old-stuff.feather").exists()
    report = (state / "reports" / "migration" / "latest.md").read_text()
    assert "| binance/ETH_BTC/5m.feather | candles | ETH/BTC | 5m | archived |" in report

    code, out = _invoke(["migrate", "status"], fresh_db, state)
    assert code == 0, out
    assert out.count("archived") == 2 and "unmatched: old-stuff.feather" in out

    code, out = _invoke(["migrate", "rollback", "binance/ETH_BTC/5m.feather"], fresh_db, state)
    assert code == 0, out
    assert "5,760 rows" in out
    assert _count(fresh_db, "SELECT count(*) FROM market.candles WHERE symbol = 'ETH/BTC'") == 0
    assert _count(fresh_db, "SELECT count(*) FROM market.candles WHERE symbol = 'XRP/ETH'") == 706
    assert (archive / "binance" / "ETH_BTC" / "5m.feather").is_file()
    code, out = _invoke(["migrate", "status", "--status", "rolled_back"], fresh_db, state)
    assert "rolled back on demand" in out and "1 ledger row(s)" in out


def test_failed_file_sets_the_exit_code(fresh_db: str, small_cache: Path, tmp_path: Path) -> None:
    broken = small_cache / "XRP_ETH-5m.feather"
    broken.write_bytes(broken.read_bytes()[:5000])
    code, out = _invoke(
        ["migrate", "run", str(small_cache), "--no-progress"], fresh_db, tmp_path / "state"
    )
    assert code == 1
    assert "failed   XRP_ETH-5m.feather: load failed: CorruptFileError" in out
    assert "verified=1" in out
