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
  Python process that loads the code location (measured by doing exactly that);
* ``signal_live_bar_to_signal_at_10k`` / ``signal_live_bar_to_decision_at_10k: p50 …, p99 …``
  — the live path (``ats signals run``) while the streaming service takes 10,000 trades/s
  from the emulator (``bench_streaming.py``'s setup: emulator process at 60x, the service in
  this process publishing a bar event per commit, the signal service in a process of its own):
  from a bar's commit to its signal's commit, and to the coordinator's decision on it, per hop
  as well; then ``signal_latency_live_vs_sensor`` puts the p50/p99 beside the sensor path's
  figures above (ratio = sensor / live).

Everything runs against scratch databases on the project's server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_database, scratch_url

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


async def bench_latency(conn, samples: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
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
    figures = {"p50": percentile(ms, 50), "p99": percentile(ms, 99)}
    ms = [t * 1000 for t in total]
    print(
        f"signal_latency_default_interval: p50 {percentile(ms, 50):,.0f} ms, "
        f"p99 {percentile(ms, 99):,.0f} ms (sensor interval {interval} s)"
    )
    return {**figures, "interval_p50": percentile(ms, 50), "interval_p99": percentile(ms, 99)}


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


LIVE_TIMEFRAMES = ("1m", "5m")
# small rules: the synthetic market then signals about seven times per hundred minutes
LIVE_PARAMS = "1m:swing=1,lookback=20,sensitivity=0;5m:swing=1,lookback=8,sensitivity=0"


async def bench_live(seconds: float) -> dict[str, dict[str, float]]:
    """The live path at the 10k trades/s streaming load; per hop {p50_ms, p99_ms, n}."""
    import bench_streaming as streaming

    from ats_pipelines.cache.server import ensure_redis
    from ats_pipelines.db.connect import database_name
    from ats_pipelines.streaming.config import StreamConfig
    from ats_pipelines.streaming.service import StreamService

    settings = load_settings({**os.environ, "ATS_ENV": "test"})
    ensure_redis(settings)
    proc, base = streaming.start_emulator()
    try:
        async with scratch_url("ats_bench_live", settings) as db_url:
            symbols, offered = streaming.symbols_for(streaming.LATENCY_RATE)
            label = f"bench{uuid.uuid4().hex[:6]}"
            spec = {
                "database": database_name(db_url),
                "exchange": label,
                "symbols": symbols,
                "timeframes": list(LIVE_TIMEFRAMES),
                "trend_params": LIVE_PARAMS,
            }
            live = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited
                [
                    sys.executable,
                    str(Path(__file__).parent / "_signal_service.py"),
                    json.dumps(spec),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            await _wait_for_beat(db_url)
            with tempfile.TemporaryDirectory() as tmp:
                config = StreamConfig(
                    database_url=db_url,
                    symbols=tuple(symbols),
                    exchange_url=base,
                    store_as=label,
                    timeframes=LIVE_TIMEFRAMES,
                    watch_books=False,
                    heal_interval_s=3600.0,
                    redis_url=settings.redis_url,
                    spill_dir=Path(tmp) / "spill",
                    grace_ms=2_000,
                    checkpoint_interval_s=5.0,
                    heartbeat_interval_s=5.0,
                )
                service = StreamService(config)
                run = asyncio.create_task(service.run())
                await asyncio.wait_for(service.ready.wait(), 60)
                t0 = time.time()
                applied0 = sum(p.counts["applied"] for p in service.pipelines.values())
                await asyncio.sleep(seconds)
                applied = sum(p.counts["applied"] for p in service.pipelines.values()) - applied0
                rate = applied / (time.time() - t0)
                service.request_stop("bench over")
                await run
            await asyncio.sleep(1.0)  # the last events analysed
            live.send_signal(signal.SIGTERM)
            out, _ = live.communicate(timeout=60)
            summary = json.loads(out.strip().splitlines()[-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    hops = summary["latency"]
    print(
        f"  live: {len(symbols)} symbols, {rate:,.0f} trades/s applied of {offered:,.0f} offered, "
        f"{summary['events']} bar events, {summary['signals']} signals, "
        f"{summary['decisions']} decisions"
    )
    for hop, name in (("bar_to_signal", "signal"), ("bar_to_decision", "decision")):
        h = hops.get(hop, {})
        print(
            f"signal_live_bar_to_{name}_at_10k: p50 {h.get('p50_ms', float('nan')):,.1f} ms, "
            f"p99 {h.get('p99_ms', float('nan')):,.1f} ms ({h.get('n', 0)} {name}s)"
        )
    for hop in (
        "committed_to_received",
        "committed_to_sent",
        "sent_to_received",
        "received_to_analyzed",
        "analyzed_to_committed",
        "signal_to_decision",
        "bar_to_analyzed",
    ):
        h = hops.get(hop, {})
        print(
            f"signal_live_hop_{hop}: p50 {h.get('p50_ms', float('nan')):,.2f} ms, "
            f"p99 {h.get('p99_ms', float('nan')):,.2f} ms ({h.get('n', 0)})"
        )
    return hops


async def _wait_for_beat(db_url: str, limit_s: float = 60.0) -> None:
    """Until the signal service beat (it is caught up and reading events by then)."""
    from ats_pipelines.db.connect import connection

    deadline = time.monotonic() + limit_s
    async with connection(db_url) as conn:
        while time.monotonic() < deadline:
            stats = await conn.fetchval(
                "SELECT stats::text FROM signals.service_heartbeats WHERE service_id = 'bench'"
            )
            if stats and len(json.loads(stats).get("caught_up", [])) == len(LIVE_TIMEFRAMES):
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("the signal service did not start (no heartbeat)")


def compare_paths(sensor: dict[str, float], live: dict[str, dict[str, float]]) -> None:
    signal_hop = live.get("bar_to_signal", {})
    if not signal_hop:
        print("signal_latency_live_vs_sensor: n/a (no live signal)")
        return
    p50, p99 = signal_hop["p50_ms"], signal_hop["p99_ms"]
    print(
        f"signal_latency_live_vs_sensor: p50 live {p50:,.1f} ms vs sensor processing "
        f"{sensor['p50']:,.0f} ms (ratio {sensor['p50'] / p50:,.0f}), at the default interval "
        f"{sensor['interval_p50']:,.0f} ms (ratio {sensor['interval_p50'] / p50:,.0f}); "
        f"p99 live {p99:,.1f} ms vs {sensor['p99']:,.0f} / {sensor['interval_p99']:,.0f} ms "
        f"(ratios {sensor['p99'] / p99:,.0f} / {sensor['interval_p99'] / p99:,.0f})"
    )


async def main(days: int, samples: int, live_s: float) -> None:
    bars = synthetic_bars(days * 1440)
    bench_rule(arrays(bars))
    async with scratch_database("ats_bench_signals") as conn:
        await bench_analyzer_run(conn, bars)
        sensor = await bench_latency(conn, samples)
    bench_process_start()
    if live_s > 0:
        compare_paths(sensor, await bench_live(live_s))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument(
        "--live-seconds",
        type=float,
        default=60.0,
        help="of the live path at 10k trades/s (0: skip)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.days, args.samples, args.live_seconds))
