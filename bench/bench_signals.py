"""The signal path: trend-rule and analyzer-run throughput over a year of 1-minute bars of one
symbol, and the bar-committed → detected-signal latency through the sensor path.

    uv run --frozen python bench/bench_signals.py [--days 365] [--samples 30]

Prints:

* ``trend_rule_1y_1m: ours N bars/s, baseline M bars/s`` — the vectorised rule against its
  literal per-bar reading (``reference_trend_signals``, the tests' oracle; timed on a slice,
  it is too slow for the year);
* ``analyzer_run_1y_1m: ours … baseline …`` — a whole analyzer run (read the bars from
  TimescaleDB, detect, write signals and watermark in one transaction) against the bare read of
  the same bars: how close the run is to the cost of fetching its input;
* ``signal_latency_processing: p50 X ms, p99 Y ms`` — from committing a bar (one that makes a
  signal) to its signal being committed, through a real sensor evaluation and the run it
  requests, executed in process (what a run does once it has started);
* ``signal_latency_default_interval: p50 …, p99 …`` — the same plus the wait for the sensor's
  next tick with the default interval (30 s): the daemon ticks on its own clock, so a bar waits
  a uniformly distributed part of the interval (seeded draw, one per sample);
* ``signal_run_process_start: p50 …`` — what the daemon's run launcher adds on top: starting a
  Python process that loads the code location (measured by doing exactly that).

Everything runs against a scratch database on the project's server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_database

from ats_pipelines.config import load_settings
from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.defs.signals.definitions import build_signals_defs
from ats_pipelines.defs.signals.jobs import TREND_ANALYSIS
from ats_pipelines.defs.signals.sensors import analyzer_sensor_name
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.analyzer import AnalyzerTarget, run_analyzer
from ats_pipelines.signals.config import (
    DEFAULT_SENSOR_INTERVAL_S,
    DEFAULT_TREND_PARAMS,
    CoordinatorRules,
    SignalsSettings,
)
from ats_pipelines.signals.trend import BarArrays, detect_trend_signals, reference_trend_signals

START = datetime(2023, 1, 1, tzinfo=UTC)
PARAMS_1M = DEFAULT_TREND_PARAMS["1m"]
REFERENCE_SLICE = 20_000


def synthetic_bars(n: int, minutes: int = 1, seed: int = 7) -> pl.DataFrame:
    """A seeded random walk of ``n`` bars (prices like BTC/USDT in cents)."""
    rng = np.random.default_rng(seed)
    close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 6e-4, n))), 2)
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0, 8, (2, n))), 2)
    ts = [START + timedelta(minutes=minutes * i) for i in range(n)]
    return pl.DataFrame(
        {
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
            "open": opens,
            "high": np.maximum(opens, close) + wick[0],
            "low": np.minimum(opens, close) - wick[1],
            "close": close,
            "volume": np.round(rng.lognormal(0, 1, n), 4),
        }
    )


def rows(bars: pl.DataFrame, symbol: str, timeframe: str) -> pl.DataFrame:
    return bars.with_columns(
        pl.lit("bench").alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(timeframe).alias("timeframe"),
        pl.lit("bench").alias("source"),
    )


def arrays(bars: pl.DataFrame) -> BarArrays:
    return BarArrays(
        bars["ts"].dt.epoch("ms").to_numpy(),
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        bars["close"].to_numpy(),
    )


def median_time(runs: int, fn, *args) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_rule(year: BarArrays) -> None:
    n = len(year)
    ours = n / median_time(3, detect_trend_signals, year, PARAMS_1M)
    part = year.slice(0, REFERENCE_SLICE)
    base = REFERENCE_SLICE / median_time(1, reference_trend_signals, part, PARAMS_1M)
    print(ratio_line(f"trend_rule_{n // 1440}d_1m", ours, base, " bars/s"))


async def bench_analyzer_run(conn, bars: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    await bulk_write(conn, "market.candles", rows(bars, "BTC/USDT", "1m"))
    await conn.execute("ANALYZE market.candles")
    end = bars["ts"][-1] + timedelta(minutes=1)
    ours, base = [], []
    for attempt in range(2):
        target = AnalyzerTarget(f"bench_{attempt}", "bench", "BTC/USDT", "1m")
        start = time.perf_counter()
        fetched = await conn.fetch(
            "SELECT ts, high, low, close FROM market.candles WHERE exchange = 'bench' "
            "AND symbol = 'BTC/USDT' AND timeframe = '1m' ORDER BY ts"
        )
        base.append(len(fetched) / (time.perf_counter() - start))
        start = time.perf_counter()
        result = await run_analyzer(conn, target, PARAMS_1M, now=end)
        ours.append(result.bars_new / (time.perf_counter() - start))
        assert result.bars_new == len(bars)
    print(
        ratio_line(
            f"analyzer_run_{len(bars) // 1440}d_1m",
            statistics.median(ours),
            statistics.median(base),
            " bars/s",
        )
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def bench_latency(conn, samples: int) -> None:  # type: ignore[no-untyped-def]
    """Per sample: store the bars up to just before a bar that makes a signal, let the
    analyzer catch up (untimed), then commit that bar and time sensor tick + run until its
    signal is committed."""
    url = load_settings().database_url_for(await conn.fetchval("SELECT current_database()"))
    bars = synthetic_bars(40_000, minutes=5, seed=11)
    settings = SignalsSettings(
        exchange="bench",
        symbols=("ETH/USDT",),
        timeframes=("5m",),
        analyzer_id="bench_latency",
        coordinator=CoordinatorRules("bench", timeframes=("5m",)),
    )
    params = settings.params("5m")
    signal_bars = [s.ts for s in detect_trend_signals(bars, params)]
    chosen = signal_bars[5 : 5 + samples]
    resources = {"timescale": TimescaleResource(database_url=url)}
    defs = dg.Definitions.merge(build_signals_defs(settings), dg.Definitions(resources=resources))
    sensor = defs.resolve_sensor_def(analyzer_sensor_name("5m"))
    job = defs.resolve_job_def(TREND_ANALYSIS)
    target = AnalyzerTarget(settings.analyzer_id, "bench", "ETH/USDT", "5m")
    frame = rows(bars, "ETH/USDT", "5m")
    stored = 0
    processing: list[float] = []
    cursor: str | None = None
    with dg.DagsterInstance.ephemeral() as instance:
        for ts in chosen:
            index = int(bars["ts"].search_sorted(ts))
            await bulk_write(conn, "market.candles", frame.slice(stored, index - stored))
            await run_analyzer(conn, target, params)
            stored = index

            def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
                context = dg.build_sensor_context(
                    cursor=cursor, instance=instance, resources=resources
                )
                result = sensor.evaluate_tick(context)
                for request in result.run_requests or []:
                    assert job.execute_in_process(
                        run_config=request.run_config, instance=instance
                    ).success
                return list(result.run_requests or []), result.cursor

            start = time.perf_counter()
            await bulk_write(conn, "market.candles", frame.slice(index, 1))  # committed
            requests, cursor = await asyncio.to_thread(tick, cursor)
            processing.append(time.perf_counter() - start)
            stored = index + 1
            assert len(requests) == 1
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM signals.detected_signals WHERE analyzer_id = $1 "
                    "AND ts = $2",
                    settings.analyzer_id,
                    ts,
                )
                == 1
            )
    rng = random.Random(5)
    interval = DEFAULT_SENSOR_INTERVAL_S
    total = [p + rng.random() * interval for p in processing]
    ms = [p * 1000 for p in processing]
    print(
        f"signal_latency_processing: p50 {percentile(ms, 50):,.0f} ms, "
        f"p99 {percentile(ms, 99):,.0f} ms ({len(ms)} signals)"
    )
    ms = [t * 1000 for t in total]
    print(
        f"signal_latency_default_interval: p50 {percentile(ms, 50):,.0f} ms, "
        f"p99 {percentile(ms, 99):,.0f} ms (sensor interval {interval} s)"
    )


def bench_process_start(runs: int = 2) -> None:
    code = "from ats_pipelines.definitions import defs; defs()"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    print(
        f"signal_run_process_start: p50 {statistics.median(times):,.0f} ms, "
        f"p99 {max(times):,.0f} ms ({runs} starts; a launched run pays this once)"
    )


async def main(days: int, samples: int) -> None:
    bars = synthetic_bars(days * 1440)
    bench_rule(arrays(bars))
    async with scratch_database("ats_bench_signals") as conn:
        await bench_analyzer_run(conn, bars)
        await bench_latency(conn, samples)
    bench_process_start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.days, args.samples))
