"""Provenance makes rollback safe: rolling a migrated file back removes only the rows nobody
else asserted. A legacy file is migrated; the exchange's REST backfill then writes an
overlapping window (some minutes equal to the file's, some different); the stream writes part
of it again; the file is rolled back. Every row the exchange asserted keeps the exchange's
values; the rows only the file held are gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.testing import running_emulator
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.rollback import rollback_target
from ats_pipelines.migration.runner import run_migration
from ats_pipelines.streaming.heal import fetch_klines
from ats_pipelines.streaming.rows import candles_table
from ats_pipelines.streaming.spill import Batch
from ats_pipelines.streaming.writer import write_batches
from ats_pipelines.warehouse.candles import ingest_window
from ats_pipelines.warehouse.intervals import Interval

pytestmark = pytest.mark.integration

MINUTE = timedelta(minutes=1)
START = datetime.fromtimestamp(FIXED_START_MS / 1000, UTC) - timedelta(days=3)
FILE = (START - 60 * MINUTE, START + 60 * MINUTE)  # the legacy file's minutes
REST = Interval(START, START + 120 * MINUTE)  # the exchange backfill's window
STREAM = (START + 30 * MINUTE, START + 90 * MINUTE)  # what the stream writes again
OHLCV = ("open", "high", "low", "close", "volume")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def legacy_file(klines: list[dict[str, Any]], path: Path) -> set[datetime]:
    """The exchange's minutes of FILE as a freqtrade-style file; every third minute of the
    overlap with REST holds other prices (a different recording). Returns those minutes."""
    rows, different = [], set()
    for k in klines:
        ts = datetime.fromtimestamp(k["ts"] / 1000, UTC)
        scale = 1.0
        if ts >= START and (ts - START) // MINUTE % 3 == 0:
            scale, _ = 1.001, different.add(ts)
        rows.append({"date": ts, **{c: k[c] * scale for c in OHLCV[:4]}, "volume": k["volume"]})
    pl.DataFrame(rows).write_parquet(path)
    return different


async def test_rollback_keeps_every_row_another_source_asserted(
    fresh_db: str, tmp_path: Path, catalog: MarketCatalog
) -> None:
    async with running_emulator(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emu:
        client = ExchangeClient(build_exchange("binance", rest_url=emu.rest_url))
        try:
            klines = await fetch_klines(client, "BTC/USDT", "1m", _ms(FILE[0]), _ms(REST.end))
            by_ts = {datetime.fromtimestamp(k["ts"] / 1000, UTC): k for k in klines}
            assert len(by_ts) == 180
            different = legacy_file(
                [k for t, k in by_ts.items() if t < FILE[1]], tmp_path / "BTC_USDT-1m.parquet"
            )
            assert len(different) == 20

            migrated = await run_migration(fresh_db, tmp_path, MigrationConfig(), catalog)
            [outcome] = migrated.outcomes
            assert outcome.status == "verified"

            async with connection(fresh_db) as conn:
                batch = await conn.fetchval("SELECT nextval('ops.batch_id_seq')")
                window = await ingest_window(
                    conn,
                    client,
                    exchange="binance",
                    symbol="BTC/USDT",
                    window=REST,
                    validator=DataValidator(),
                    batch_id=batch,
                )
                # 60 new minutes, 20 overwritten; the 40 equal ones are skipped (corroborated)
                assert (window.write.inserted, window.write.updated) == (60, 20)
                streamed = [k for t, k in by_ts.items() if STREAM[0] <= t < STREAM[1]]
                table = candles_table("binance", "BTC/USDT", ["1m"] * 60, streamed, "stream")
                await write_batches(conn, [Batch("market.candles", table)])

                done = await rollback_target(conn, str(outcome.batch_id), "test")
                assert [r.rows_deleted for r in done] == [60]
                stored = await conn.fetch(
                    "SELECT ts, open, high, low, close, volume, source, batch_id, asserted_by "
                    "FROM market.candles WHERE exchange = 'binance' AND symbol = 'BTC/USDT' "
                    "AND timeframe = '1m' ORDER BY ts"
                )
        finally:
            await client.close()

    # every minute the exchange asserted holds the exchange's values; the file-only ones are gone
    assert [r["ts"] for r in stored] == [t for t in by_ts if t >= REST.start]
    for r in stored:
        assert tuple(r[c] for c in OHLCV) == tuple(by_ts[r["ts"]][c] for c in OHLCV), r["ts"]
        assert (r["source"], r["batch_id"]) == ("rest", batch), r["ts"]
    # the stream wrote its own bars' fuller values: it asserted none of them exactly
    assert all(r["asserted_by"] is None for r in stored)
