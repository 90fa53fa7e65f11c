"""Acceptance: a cache built from real files under mixed conventions migrates exactly once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asyncpg
import polars as pl
import pytest

from ats_pipelines.db import bulk
from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.rollback import rollback_target
from ats_pipelines.migration.runner import RunResult, run_migration
from tests.migration.conftest import Cache, Expect, read_candles

pytestmark = pytest.mark.integration

VALUES = {
    "candles": ["open", "high", "low", "close", "volume"],
    "reference_candles": ["open", "high", "low", "close", "volume"],
    "funding_rates": ["rate"],
    "trades": ["trade_id", "price", "amount", "cost", "side"],
}


async def db_rows(conn: asyncpg.Connection, expect: Expect) -> pl.DataFrame:
    """The database rows of the series a file holds, ordered like the expectation."""
    spec = SPECS[expect.dataset]
    cols = ", ".join(["ts", *VALUES[expect.dataset]])
    where = "exchange = 'binance' AND symbol = $1"
    args: list[object] = [expect.symbol]
    if expect.dataset in ("candles", "reference_candles"):
        where += " AND timeframe = $2"
        args.append(expect.timeframe)
    order = "ts, trade_id" if expect.dataset == "trades" else "ts"
    records = await conn.fetch(
        f"SELECT {cols} FROM {spec.table} WHERE {where} ORDER BY {order}", *args
    )
    schema = {
        "ts": pl.Datetime("us", "UTC"),
        **{
            c: (pl.String if c in ("trade_id", "side") else pl.Float64)
            for c in VALUES[expect.dataset]
        },
    }
    return pl.DataFrame([dict(r) for r in records], schema=schema, orient="row")


def expected_values(expect: Expect) -> pl.DataFrame:
    frame = expect.unique
    if expect.dataset == "funding_rates":  # freqtrade keeps the rate in 'open'
        frame = frame.rename({"open": "rate"})
    if expect.dataset == "reference_candles":  # mark candles have no volume (NaN -> NULL)
        frame = frame.with_columns(pl.col("volume").fill_nan(None))
    order = ["ts", "trade_id"] if expect.dataset == "trades" else ["ts"]
    return frame.select(["ts", *VALUES[expect.dataset]]).sort(order)


async def migrate_cache(
    url: str, cache: Cache, config: MigrationConfig, catalog: MarketCatalog, workers: int = 2
) -> RunResult:
    return await run_migration(url, cache.root, config, catalog, workers=workers)


async def test_cache_migrates_exactly_once(
    fresh_db: str, cache: Cache, config: MigrationConfig, catalog: MarketCatalog
) -> None:
    first = await migrate_cache(fresh_db, cache, config, catalog)
    outcomes = {o.file.relative: o for o in first.outcomes}

    # every good file loaded and verified, with the counts the source data implies
    assert set(outcomes) == set(cache.good) | set(cache.corrupt)
    async with connection(fresh_db) as conn:
        for rel, expect in cache.good.items():
            outcome = outcomes[rel]
            assert outcome.status == "verified", (rel, outcome.message)
            row = outcome.ledger_row
            assert row is not None
            assert (row["symbol"], row["dataset"]) == (expect.symbol, expect.dataset), rel
            assert row["rows_read"] == expect.rows_read, rel
            assert row["rows_duplicate"] == expect.duplicates, rel
            assert row["rows_quarantined"] == expect.quarantined, rel
            assert row["rows_inserted"] == expect.unique.height, rel
            assert row["rows_existing"] == 0, rel
            assert row["loaded_checksum"] == row["source_checksum"], rel
            # nothing was there yet: no chunk needed the bulk writer's staging
            assert set(row["timings"]["write_paths"]) <= {"copy", "small"}, rel
            for key, value in expect.assumptions.items():
                assert row["assumptions"][key] == value, (rel, key)
            # the database holds exactly the source's values, compared independently
            stored = await db_rows(conn, expect)
            assert stored.equals(expected_values(expect)), rel

        # duplicates with other values went to quarantine, tagged with the file's batch
        dup = outcomes["futures/XRP_USDT_USDT-5m-futures.parquet"]
        rules = await conn.fetch(
            "SELECT rule, location FROM ops.quarantine WHERE batch_id = $1", dup.batch_id
        )
        assert [r["rule"] for r in rules] == ["ohlcv.duplicate_conflict"] * 3
        assert all(
            r["location"].startswith("futures/XRP_USDT_USDT-5m-futures.parquet:row ") for r in rules
        )

        # the naive file's assumption is recorded; the gappy 1m file reports its gaps
        naive = outcomes["XRPETH_5m.parquet"].ledger_row
        assert naive is not None and "UTC" in naive["assumptions"]["naive_timestamps"]
        gappy = outcomes["ETH_USDT-1m.json"].ledger_row
        assert gappy is not None
        grid = gappy["verification"]["grid"]
        assert grid["rows"] == 13_681
        assert grid["missing"] == grid["expected_on_grid"] - 13_681 > 0
        funding = outcomes["futures/XRP_USDT_USDT-8h-funding_rate.feather"].ledger_row
        assert funding is not None and funding["verification"]["grid"]["off_grid_rows"] > 0

        # corrupt files: failed with the reason, and none of their rows remain
        for rel, words in cache.corrupt.items():
            outcome = outcomes[rel]
            assert outcome.status == "failed", rel
            assert words in outcome.message, (rel, outcome.message)
            row = await conn.fetchrow(
                "SELECT status, error, rows_inserted FROM ops.migration_ledger WHERE batch_id = $1",
                outcome.batch_id,
            )
            assert row is not None
            assert row["status"] == "failed" and words in row["error"]
            left = await conn.fetchval(
                "SELECT count(*) FROM market.candles WHERE batch_id = $1", outcome.batch_id
            )
            assert left == 0, rel
        ada = await conn.fetchval("SELECT count(*) FROM market.candles WHERE symbol = 'ADA/BTC'")
        assert ada == 0  # its first 12 chunks had been written before the bad page

        # the unmatched files are listed, with reasons, in the result and the database
        listed = {u.relative: u.reason for u in first.unmatched}
        assert set(listed) == set(cache.unmatched)
        for rel, words in cache.unmatched.items():
            assert words in listed[rel], (rel, listed[rel])
        stored_unmatched = await conn.fetch("SELECT relative_path FROM ops.migration_unmatched")
        assert {r["relative_path"] for r in stored_unmatched} == set(cache.unmatched)

        totals = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in (
                "market.candles",
                "market.reference_candles",
                "market.funding_rates",
                "market.trades",
                "ops.quarantine",
            )
        }

    # running again inserts nothing: verified files are skipped, broken ones fail again
    second = await migrate_cache(fresh_db, cache, config, catalog)
    again = {o.file.relative: o for o in second.outcomes}
    assert all(again[rel].status == "skipped" for rel in cache.good)
    assert all(again[rel].status == "failed" for rel in cache.corrupt)
    async with connection(fresh_db) as conn:
        for table, count in totals.items():
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == count, table
        attempts = await conn.fetchval(
            "SELECT max(attempts) FROM ops.migration_ledger WHERE status = 'verified'"
        )
        assert attempts == 1


async def test_rollback_removes_only_the_batchs_rows(
    fresh_db: str, cache: Cache, config: MigrationConfig, catalog: MarketCatalog, testdata: Path
) -> None:
    # 100 of the ETH/BTC candles were already there from another source
    src = read_candles(testdata / "freqtrade" / "ETH_BTC-5m.feather").head(100)
    earlier = src.select(
        pl.lit("binance").alias("exchange"),
        pl.lit("ETH/BTC").alias("symbol"),
        pl.lit("5m").alias("timeframe"),
        pl.col("date").dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit("rest").alias("source"),
    )
    async with connection(fresh_db) as conn:
        await bulk_write(conn, "market.candles", earlier)
    result = await migrate_cache(fresh_db, cache, config, catalog, workers=1)
    eth = next(o for o in result.outcomes if o.file.relative == "binance/ETH_BTC/5m.parquet")
    assert eth.status == "verified"
    assert eth.ledger_row is not None
    assert (eth.ledger_row["rows_inserted"], eth.ledger_row["rows_existing"]) == (5_660, 100)
    assert eth.ledger_row["verification"]["existing_rows"] == 100
    # only the chunk overlapping the 100 rows needed the bulk writer's staging
    paths = eth.ledger_row["timings"]["write_paths"]
    assert paths["staged"] == 1 and paths["copy"] >= 1

    async with connection(fresh_db) as conn:
        done = await rollback_target(conn, "binance/ETH_BTC/5m.parquet", "test says so")
        assert [r.rows_deleted for r in done] == [5_660]
        kept = await conn.fetch(
            "SELECT source, batch_id FROM market.candles "
            "WHERE symbol = 'ETH/BTC' AND timeframe = '5m'"
        )
        assert len(kept) == 100 and {(r["source"], r["batch_id"]) for r in kept} == {("rest", None)}
        row = await conn.fetchrow(
            "SELECT status, error FROM ops.migration_ledger WHERE batch_id = $1", eth.batch_id
        )
        assert row is not None
        assert (row["status"], row["error"]) == ("rolled_back", "test says so")
        # other files are unaffected
        xrp = await conn.fetchval(
            "SELECT count(*) FROM market.candles WHERE symbol = 'XRP/ETH' AND timeframe = '1m'"
        )
        assert xrp == 2_469


async def test_file_disagreeing_with_existing_rows_fails_verification(
    fresh_db: str, config: MigrationConfig, catalog: MarketCatalog, testdata: Path, tmp_path: Path
) -> None:
    """freqtrade's feather and JSON copies of the same 100 candles differ in the last bit of
    a few prices: the second file must not be declared loaded over the first."""
    root = tmp_path / "cache"
    (root / "futures").mkdir(parents=True)
    for name in ("XRP_USDT_USDT-1h-futures.feather", "XRP_USDT_USDT-1h-futures.json.gz"):
        (root / "futures" / name).write_bytes(
            (testdata / "freqtrade" / "futures" / name).read_bytes()
        )
    result = await run_migration(fresh_db, root, config, catalog, workers=1)
    feather_, json_ = result.outcomes
    assert feather_.status == "verified"
    assert json_.status == "failed"
    assert "content checksum differs" in json_.message
    assert "already in the database hold other values" in json_.message
    async with connection(fresh_db) as conn:
        stored = await conn.fetch(
            "SELECT batch_id FROM market.candles WHERE symbol = "
            "'XRP/USDT:USDT' AND timeframe = '1h'"
        )
        assert len(stored) == 100 and {r["batch_id"] for r in stored} == {feather_.batch_id}
        raw = await conn.fetchval(
            "SELECT verification FROM ops.migration_ledger WHERE batch_id = $1", json_.batch_id
        )
        verification = json.loads(str(raw))
        assert verification["existing_rows"] == 100
        assert verification["source_checksum"] != verification["loaded_checksum"]


async def test_key_conflict_after_the_probe_falls_back_to_the_bulk_writer(
    fresh_db: str,
    config: MigrationConfig,
    catalog: MarketCatalog,
    testdata: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer racing into the probed range: the raw COPY's key conflict is undone by its
    savepoint and the bulk writer loads the chunk, keeping the other writer's rows."""
    src = read_candles(testdata / "freqtrade" / "XRP_ETH-5m.feather")
    racer = src.slice(300, 10).select(
        pl.lit("binance").alias("exchange"),
        pl.lit("XRP/ETH").alias("symbol"),
        pl.lit("5m").alias("timeframe"),
        pl.col("date").dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit("stream").alias("source"),
    )
    async with connection(fresh_db) as conn:
        await bulk_write(conn, "market.candles", racer)

    async def probe_sees_nothing(*_: object) -> bool:
        return True  # as if the racer committed right after the bulk writer's probe

    monkeypatch.setattr(bulk, "_series_absent", probe_sees_nothing)
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copy(testdata / "freqtrade" / "XRP_ETH-5m.feather", root / "XRP_ETH-5m.feather")
    [outcome] = (await run_migration(fresh_db, root, config, catalog)).outcomes
    assert outcome.status == "verified", outcome.message
    row = outcome.ledger_row
    assert row is not None
    paths = row["timings"]["write_paths"]
    assert (paths["copy_conflict"], paths["staged"]) == (1, 1)
    assert (row["rows_inserted"], row["rows_existing"]) == (src.height - 10, 10)
    async with connection(fresh_db) as conn:
        sources = await conn.fetch(
            "SELECT source, count(*) AS n FROM market.candles "
            "WHERE symbol = 'XRP/ETH' GROUP BY source ORDER BY source"
        )
    assert [(r["source"], r["n"]) for r in sources] == [
        ("legacy_cache", src.height - 10),
        ("stream", 10),
    ]


async def test_rollback_of_an_ambiguous_relative_path_is_refused(
    fresh_db: str, config: MigrationConfig, catalog: MarketCatalog, testdata: Path, tmp_path: Path
) -> None:
    for name in ("one", "two"):
        root = tmp_path / name
        root.mkdir()
        shutil.copy(testdata / "freqtrade" / "XRP_ETH-5m.feather", root / "XRP_ETH-5m.feather")
        await run_migration(fresh_db, root, config, catalog)
    async with connection(fresh_db) as conn:
        with pytest.raises(LookupError, match="matches several files"):
            await rollback_target(conn, "XRP_ETH-5m.feather", "which one?")
        [done] = await rollback_target(
            conn, str(tmp_path / "one" / "XRP_ETH-5m.feather"), "this one"
        )
        # file two asserted the same rows: they are handed to its batch, not deleted, and
        # file two needs no reload
        assert (done.rows_deleted, done.reopened) == (0, ())
        two = await conn.fetchval(
            "SELECT batch_id FROM ops.migration_ledger WHERE file_path = $1",
            str(tmp_path / "two" / "XRP_ETH-5m.feather"),
        )
        owners = await conn.fetch(
            "SELECT batch_id, asserted_by, count(*) FROM market.candles "
            "WHERE symbol = 'XRP/ETH' AND timeframe = '5m' GROUP BY 1, 2"
        )
        assert [tuple(r) for r in owners] == [(two, None, 706)]
        [gone] = await rollback_target(conn, str(two), "and that one")
        assert gone.rows_deleted == 706
