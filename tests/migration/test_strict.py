"""Strict migration: files that are not what their name says, or too much of which is bad, are
refused whole with the reason in the ledger; impossible names are listed, not loaded; the
quarantine keeps the text a file really held; ``--exchange`` must be a ccxt exchange id."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.migration.config import MigrationConfig, MigrationConfigError
from ats_pipelines.migration.discovery import Identifier, UnmatchedFile
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.runner import run_migration
from tests.migration.conftest import read_candles
from tests.migration.test_cli import _count, _invoke

pytestmark = pytest.mark.integration


def one_minute_rows(testdata: Path, n: int = 300) -> pl.DataFrame:
    """The first ``n`` real 1-minute XRP/ETH candles (a thin market: some minutes are absent)."""
    frame = read_candles(testdata / "freqtrade" / "XRP_ETH-1m.feather").head(n)
    steps = frame["date"].diff().drop_nulls().dt.total_minutes()
    assert frame.height == n and steps.mode().to_list() == [1]
    return frame


async def migrate_one(url: str, root: Path, config: MigrationConfig, catalog: MarketCatalog):
    result = await run_migration(url, root, config, catalog, workers=1)
    assert len(result.outcomes) == 1, result
    outcome = result.outcomes[0]
    async with connection(url) as conn:
        row = await conn.fetchrow(
            "SELECT status, error, rows_quarantined FROM ops.migration_ledger WHERE batch_id = $1",
            outcome.batch_id,
        )
        stored = await conn.fetchval("SELECT count(*) FROM market.candles WHERE symbol = 'XRP/ETH'")
    assert row is not None
    return outcome, row, stored


async def test_name_timeframe_must_match_the_datas_spacing(
    fresh_db: str, testdata: Path, tmp_path: Path, catalog: MarketCatalog
) -> None:
    one_minute_rows(testdata).write_parquet(tmp_path / "XRP_ETH-1h.parquet")
    outcome, row, stored = await migrate_one(fresh_db, tmp_path, MigrationConfig(), catalog)
    assert outcome.status == "failed"
    assert (row["status"], row["error"]) == (
        "failed",
        "refused: the file name says timeframe 1h but its rows are 1m apart "
        "(their most common spacing)",
    )
    assert stored == 0


@pytest.mark.parametrize(
    ("bad", "limit", "status", "error", "stored"),
    [
        (
            10,
            None,
            "failed",
            "refused: 10 of 300 rows rejected (3.33%), more than max_rejected_fraction 1.00% "
            "(see ops.quarantine)",
            0,
        ),
        (10, 0.05, "verified", None, 290),
        (3, None, "verified", None, 297),
        (300, 1.0, "failed", "refused: all 300 rows rejected (see ops.quarantine)", 0),
    ],
)
async def test_rejected_share_refuses_the_whole_file(
    fresh_db: str,
    testdata: Path,
    tmp_path: Path,
    catalog: MarketCatalog,
    bad: int,
    limit: float | None,
    status: str,
    error: str | None,
    stored: int,
) -> None:
    rows = one_minute_rows(testdata).with_row_index("i")
    broken = rows.with_columns(  # a negative close breaks ohlcv.price_positive
        pl.when(pl.col("i") < bad).then(-pl.col("close")).otherwise(pl.col("close")).alias("close")
    ).drop("i")
    broken.write_parquet(tmp_path / "XRP_ETH-1m.parquet")
    config = MigrationConfig().with_overrides(max_rejected_fraction=limit)
    outcome, row, count = await migrate_one(fresh_db, tmp_path, config, catalog)
    assert (outcome.status, row["status"], row["error"]) == (status, status, error)
    assert count == stored
    if status == "verified":
        assert row["rows_quarantined"] == bad


async def test_quarantine_keeps_the_raw_text(
    fresh_db: str, testdata: Path, tmp_path: Path, catalog: MarketCatalog
) -> None:
    rows = one_minute_rows(testdata)
    texts = rows.select(
        pl.col("date").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        *(pl.col(c).cast(pl.String) for c in ("open", "high", "low", "close", "volume")),
    )
    texts = texts.with_row_index("i").with_columns(
        pl.when(pl.col("i") == 5).then(pl.lit("1,234.5")).otherwise("close").alias("close"),
        pl.when(pl.col("i") == 7).then(pl.lit("not a date")).otherwise("date").alias("date"),
    )
    texts.drop("i").write_parquet(tmp_path / "XRP_ETH-1m.parquet")
    outcome, row, stored = await migrate_one(fresh_db, tmp_path, MigrationConfig(), catalog)
    assert (outcome.status, row["rows_quarantined"], stored) == ("verified", 2, 298)
    async with connection(fresh_db) as conn:
        bad = await conn.fetch(
            "SELECT rule, reason, payload FROM ops.quarantine WHERE batch_id = $1 ORDER BY id",
            outcome.batch_id,
        )
    assert [(r["rule"], r["reason"]) for r in bad] == [
        ("migration.unreadable", "XRP_ETH-1m.parquet:row 6: close '1,234.5' is not a number"),
        ("migration.unreadable", "XRP_ETH-1m.parquet:row 8: ts 'not a date' is not a timestamp"),
    ]
    assert json.loads(bad[0]["payload"])["close"] == "1,234.5"
    assert json.loads(bad[1]["payload"])["ts"] == "not a date"


def test_impossible_timeframe_is_listed_as_unmatched(
    tmp_path: Path, catalog: MarketCatalog
) -> None:
    path = tmp_path / "XRP_ETH-99999999999999999999999m.feather"
    path.write_bytes(b"")
    found = Identifier.build(MigrationConfig(), catalog).identify(tmp_path, path)
    assert isinstance(found, UnmatchedFile)
    assert found.reason == (
        "invalid timeframe '99999999999999999999999m': longer than 64-bit microsecond time "
        "can represent"
    )


def test_exchange_must_be_a_ccxt_id(fresh_db: str, testdata: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    one_minute_rows(testdata).write_parquet(root / "XRP_ETH-1m.parquet")
    evil = "evil'; DROP TABLE x;--"
    code, out = _invoke(
        ["migrate", "run", str(root), "--exchange", evil], fresh_db, tmp_path / "state"
    )
    assert code != 0
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith(f"exchange {evil!r} is not a ccxt exchange id (such as binance, kraken, okx)")
    )
    assert "Traceback" not in out
    assert _count(fresh_db, "SELECT count(*) FROM ops.migration_ledger") == 0
    with pytest.raises(MigrationConfigError, match="not a ccxt exchange id"):
        MigrationConfig(default_exchange="kraken ").check()
