"""Legacy cache migration: a generated Parquet cache vs raw binary COPY of the same rows.

Ours: ``run_migration`` over a cache of F Parquet files (freqtrade naming, tz-aware ``date``,
OHLCV) holding N one-minute candles in total: discovery, sha256 of each file, chunked
reading, normalisation, the shared validator, the bulk writer (batch-tagged, one transaction
per file), the ledger, and verification (row count, range and content checksum read back
from the database). Baseline: the same rows, already in memory, streamed with plain binary
COPY into an empty copy of market.candles (same columns, keys, constraints, hypertable).
Both run in this process against the same scratch database, baseline first, each after a
CHECKPOINT. N defaults to 10,000,000 in 300 files (ATS_BENCH_ROWS, ATS_BENCH_FILES,
ATS_BENCH_WORKERS override).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_url

from ats_pipelines.db.bulk import copy_raw
from ats_pipelines.db.connect import connection
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.runner import run_migration

START_US = int(np.datetime64("2023-01-01T00:00", "us").astype(np.int64))


def candles(rows: int, seed: int) -> pa.Table:
    """One file's worth of plausible 1m candles (high/low bracket open/close)."""
    rng = np.random.default_rng(seed)
    ts = START_US + np.arange(rows, dtype=np.int64) * 60_000_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, rows)))
    open_ = close * (1 + rng.normal(0, 5e-4, rows))
    high = np.maximum(open_, close) * (1 + rng.random(rows) * 1e-3)
    low = np.minimum(open_, close) * (1 - rng.random(rows) * 1e-3)
    return pa.table(
        {
            "date": pa.array(ts * 1000, pa.timestamp("ns", tz="UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.gamma(2.0, 10.0, rows),
        }
    )


def build_cache(root: Path, total: int, files: int) -> tuple[list[tuple[str, pa.Table]], int]:
    per = [total // files + (1 if i < total % files else 0) for i in range(files)]
    out = []
    for i, rows in enumerate(per):
        table = candles(rows, seed=i)
        pq.write_table(table, root / f"B{i:04d}_USDT-1m.parquet", compression="snappy")
        out.append((f"B{i:04d}/USDT", table))
    return out, sum(p.stat().st_size for p in root.iterdir())


def baseline_rows(symbol: str, table: pa.Table) -> pa.Table:
    """The rows exactly as the migration writes them (same columns, types and values)."""
    n = table.num_rows
    return pa.table(
        {
            "exchange": pa.array(["binance"] * n),
            "symbol": pa.array([symbol] * n),
            "timeframe": pa.array(["1m"] * n),
            "ts": table["date"].cast(pa.timestamp("us", tz="UTC")),
            "open": table["open"],
            "high": table["high"],
            "low": table["low"],
            "close": table["close"],
            "volume": table["volume"],
            "source": pa.array(["legacy_cache"] * n),
            "batch_id": pa.array([1] * n, pa.int64()),
        }
    )


async def checkpoint(conn: asyncpg.Connection) -> None:
    # not allowed for every role; then both phases run without it alike
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("CHECKPOINT")


async def main() -> None:
    total = int(os.environ.get("ATS_BENCH_ROWS", "10000000"))
    files = int(os.environ.get("ATS_BENCH_FILES", "300"))
    workers = int(os.environ.get("ATS_BENCH_WORKERS", "2"))
    with tempfile.TemporaryDirectory(prefix="ats-bench-cache-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generated, size = build_cache(root, total, files)
        print(
            f"generated {total:,} rows in {files} Parquet files ({size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        payloads = [baseline_rows(sym, t) for sym, t in generated]
        async with scratch_url("ats_bench_mig") as url, connection(url) as conn:
            await conn.execute(
                "CREATE TABLE market.candles_baseline (LIKE market.candles INCLUDING ALL)"
            )
            hyper = await conn.fetchval(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            )
            if hyper:
                await conn.execute(
                    "SELECT create_hypertable('market.candles_baseline', by_range('ts', "
                    "INTERVAL '7 days'), create_default_indexes => false)"
                )
            await checkpoint(conn)
            t0 = time.perf_counter()
            async with conn.transaction():
                for payload in payloads:
                    await copy_raw(conn, "market.candles_baseline", payload)
            baseline_s = time.perf_counter() - t0
            del payloads

            await checkpoint(conn)
            config = MigrationConfig(workers=workers)
            t0 = time.perf_counter()
            result = await run_migration(url, root, config, MarketCatalog(), workers=workers)
            ours_s = time.perf_counter() - t0
            counts = result.counts()
            loaded = await conn.fetchval("SELECT count(*) FROM market.candles")
            assert counts == {"verified": files}, counts
            assert loaded == total, (loaded, total)
    print(f"migration ({workers} workers): {ours_s:.1f}s, baseline COPY {baseline_s:.1f}s")
    print(
        ratio_line(
            f"migration {total:,} rows / {files} files",
            total / ours_s,
            total / baseline_s,
            " rows/s",
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
