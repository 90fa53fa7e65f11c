"""Quality checks: the full candle check set (Great Expectations) over 30 days x 2 symbols of
1-minute candles, against a plain SQL implementation of the same rules.

Ours is what the report and the asset checks run: read the window's candles and confirmed-empty
minutes from TimescaleDB, prepare the derived columns, validate the row suite and the coverage
suite with GX (pandas batches), and collect failing expectations with sample rows. The baseline
is one SQL statement counting the rows breaking each rule and computing each series' coverage
(``ats_pipelines.quality.sqlbaseline``). The data has two days missing per symbol (6.7 %) and five
misaligned bars, so both report failures; they must agree on which rules fail. Runs alternate
after a warm-up (GX import and first-use costs excluded); medians of ATS_BENCH_REPEATS (3).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_database

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.quality.checkset import candle_entries
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.sqlbaseline import candle_rule_counts

DAYS, SYMBOLS = 30, ("BTC/USDT", "ETH/USDT")
START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = (START, START + timedelta(days=DAYS))
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def candles(seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    per = DAYS * 1440
    base = int(START.timestamp() * 1_000_000)
    parts = []
    for k, symbol in enumerate(SYMBOLS):
        ts = base + np.arange(per, dtype=np.int64) * 60_000_000
        keep = np.ones(per, dtype=bool)
        keep[10_000 + k * 500 : 12_880 + k * 500] = False  # two days the exchange never gave
        ts = ts[keep]
        ts[[100, 2000, 5000][: 3 - k]] += 30_000_000  # misaligned: 30 s off the minute
        n = len(ts)
        close = 100 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = close * (1 + rng.normal(0, 5e-4, n))
        high = np.maximum(open_, close) * (1 + rng.random(n) * 1e-3)
        low = np.minimum(open_, close) * (1 - rng.random(n) * 1e-3)
        parts.append(
            pa.table(
                {
                    "exchange": pa.array(["binance"] * n),
                    "symbol": pa.array([symbol] * n),
                    "timeframe": pa.array(["1m"] * n),
                    "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": rng.gamma(2.0, 10.0, n),
                    "source": pa.array(["bench"] * n),
                }
            )
        )
    return pa.concat_tables(parts)


async def main() -> None:
    repeats = int(os.environ.get("ATS_BENCH_REPEATS", "3"))
    policy = QualityPolicy()
    rows = candles()
    async with scratch_database("ats_bench_quality") as conn:
        await bulk_write(conn, "market.candles", rows)
        await conn.execute("ANALYZE market.candles")

        async def ours() -> list[str]:
            (entry,) = await candle_entries(
                conn, WINDOW, now=NOW, policy=policy, timeframes=("1m",)
            )
            assert entry.outcome is not None
            return entry.outcome.failed_rules

        async def baseline() -> list[str]:
            counts = await candle_rule_counts(
                conn,
                exchange="binance",
                symbols=SYMBOLS,
                timeframe="1m",
                start=WINDOW[0],
                end=WINDOW[1],
                now=NOW,
                policy=policy,
            )
            return counts.failed_rules

        ours_rules, base_rules = await ours(), await baseline()  # warm-up (GX import, caches)
        assert ours_rules == base_rules == ["ohlcv.coverage", "ohlcv.ts_aligned"], (
            ours_rules,
            base_rules,
        )
        times: dict[str, list[float]] = {"ours": [], "baseline": []}
        for _ in range(repeats):
            for name, fn in (("baseline", baseline), ("ours", ours)):
                t0 = time.perf_counter()
                await fn()
                times[name].append(time.perf_counter() - t0)
    n = rows.num_rows
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["baseline"])
    print(
        ratio_line(
            f"quality_candle_check_set_{DAYS}d_{len(SYMBOLS)}sym ({n:,} rows)",
            n / ours_s,
            n / base_s,
            unit=" rows/s",
        )
    )
    print(
        f"quality_candle_check_set: ours p50 {ours_s * 1000:,.0f} ms, "
        f"baseline p50 {base_s * 1000:,.0f} ms (GX is {ours_s / base_s:.1f}x the SQL time)"
    )


if __name__ == "__main__":
    asyncio.run(main())
