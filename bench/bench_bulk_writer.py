"""Bulk writer: upserting N one-minute candles vs raw binary COPY of the same rows.

The baseline is the fastest raw path: the same binary COPY payload streamed straight into an
empty copy of market.candles (same columns, keys, constraints and hypertable layout), with no
staging and no conflict handling. Both runs happen in the same process, alternating, on the same
server, after a CHECKPOINT each; medians of ATS_BENCH_REPEATS (3) runs are reported.
N defaults to 1,000,000 (ATS_BENCH_ROWS overrides).

Three cases of the bulk writer: new rows (a chunk whose series has nothing stored in its time
range goes straight in), rows half of which are stored already (every chunk takes the staged
merge: COPY to staging, count, anti-join insert), and a re-run where every row is stored.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_database

from ats_pipelines.db.bulk import bulk_write, copy_raw


def synthetic_candles(n: int, symbols: int = 4, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    per = n // symbols
    start = np.datetime64("2024-01-01T00:00", "m").astype("datetime64[us]").astype(np.int64)
    ts = np.tile(start + np.arange(per, dtype=np.int64) * 60_000_000, symbols)
    sym = np.repeat([f"SYM{i}/USDT" for i in range(symbols)], per)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(ts))))
    open_ = close * (1 + rng.normal(0, 5e-4, len(ts)))
    high = np.maximum(open_, close) * (1 + rng.random(len(ts)) * 1e-3)
    low = np.minimum(open_, close) * (1 - rng.random(len(ts)) * 1e-3)
    volume = rng.gamma(2.0, 10.0, len(ts))
    return pa.table(
        {
            "exchange": pa.array(["binance"] * len(ts)),
            "symbol": pa.array(sym),
            "timeframe": pa.array(["1m"] * len(ts)),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "trade_count": rng.integers(1, 500, len(ts)),
            "vwap": (high + low + close) / 3,
            "taker_buy_volume": volume * rng.random(len(ts)),
            "source": pa.array(["bench"] * len(ts)),
        }
    )


async def main() -> None:
    n = int(os.environ.get("ATS_BENCH_ROWS", "1000000"))
    repeats = int(os.environ.get("ATS_BENCH_REPEATS", "3"))
    rows = synthetic_candles(n)
    baseline, ours, rerun, half = [], [], [], []
    every_other = rows.take(list(range(0, rows.num_rows, 2)))
    async with scratch_database() as conn:
        await conn.execute(
            "CREATE TABLE market.candles_baseline (LIKE market.candles INCLUDING ALL)"
        )
        await conn.execute(
            "SELECT create_hypertable('market.candles_baseline', by_range('ts', INTERVAL '7 days'),"
            " create_default_indexes => false)"
        )
        # Alternate the two paths and keep medians: the machine is shared and noisy.
        for _ in range(repeats):
            await conn.execute("TRUNCATE market.candles_baseline, market.candles")
            await conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            async with conn.transaction():
                await copy_raw(conn, "market.candles_baseline", rows)
            baseline.append(time.perf_counter() - t0)

            await conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            result = await bulk_write(conn, "market.candles", rows)
            ours.append(time.perf_counter() - t0)
            assert result.inserted == rows.num_rows, result

            t0 = time.perf_counter()
            again = await bulk_write(conn, "market.candles", rows)
            rerun.append(time.perf_counter() - t0)
            assert again.inserted == 0 and again.skipped == rows.num_rows, again

            # The staged path: every chunk overlaps stored rows (every other minute present).
            await conn.execute("TRUNCATE market.candles")
            await bulk_write(conn, "market.candles", every_other)
            await conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            mixed = await bulk_write(conn, "market.candles", rows)
            half.append(time.perf_counter() - t0)
            assert mixed.inserted == rows.num_rows - every_other.num_rows, mixed

    base = n / statistics.median(baseline)
    print(
        ratio_line(f"bulk_writer_upsert_{n}_candles", n / statistics.median(ours), base, " rows/s")
    )
    print(
        ratio_line(
            f"bulk_writer_upsert_{n}_candles_half_present (staged merge)",
            n / statistics.median(half),
            base,
            " rows/s",
        )
    )
    print(
        ratio_line(
            f"bulk_writer_rerun_all_present_{n}_candles",
            n / statistics.median(rerun),
            base,
            " rows/s",
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
