"""Market data: REST backfill from the emulator, and the read API's latencies.

1. ``backfill_30d_2sym`` — 30 days × 2 symbols of 1-minute candles fetched from the emulator
   (``ats emulator`` in its own process, like a remote exchange; ccxt over loopback, pages of
   1000), validated, bulk-written, logged (what the ``candles_1m`` asset runs for a ranged
   backfill, one symbol after the other). Baseline: the bulk writer alone writing the same rows
   (new keys) in the same run.
2. ``rollup_30d_2sym`` — the incremental rollup to 5m..1d of those minutes; baseline: a plain
   ``INSERT … SELECT … GROUP BY time_bucket`` of the same 5m bars (one level, no watermark).
3. ``get_bars_last_500`` — p50/p99 of ``get_bars`` for the last 500 1m bars (target p99 < 5 ms).
4. ``get_multi_timeframe_1d_6tf`` — p50/p99 for one day over 1m..1d (target < 50 ms).

A scratch database on the project's server, dropped afterwards. ATS_BENCH_DAYS overrides 30.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line, scratch_url

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.reader import MarketData
from ats_pipelines.warehouse.backfill import backfill
from ats_pipelines.warehouse.rollups import rollup_incremental

SYMBOLS = ("BTC/USDT", "ETH/USDT")
WEIGHT_PER_MINUTE = 6000  # the emulator's default REQUEST_WEIGHT budget, as Binance's
FIRST_DAY = date(2024, 4, 1)  # the emulator's market starts 2024-03-31, its clock 2024-05-01


def latency_line(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name}: p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def timed(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class WeightTally:
    """The REST weight the exchange charged, from its ``x-mbx-used-weight-1m`` answers: the
    highest value seen in each window, a window ending when the value drops."""

    def __init__(self) -> None:
        self.total = 0
        self._window_max = 0
        self.refused = 0  # 429 and 418 answers

    def see(self, used: int) -> None:
        if used < self._window_max:
            self.total += self._window_max
            self._window_max = 0
        self._window_max = max(self._window_max, used)

    def charged(self) -> int:
        return self.total + self._window_max

    def watch(self, exchange: Any) -> None:
        """Tally every REST answer ``exchange`` (ccxt) receives."""
        original = exchange.on_rest_response

        def hook(code: Any, reason: Any, url: Any, method: Any, headers: Any, *rest: Any) -> Any:
            value = (headers or {}).get("x-mbx-used-weight-1m") or (headers or {}).get(
                "X-MBX-USED-WEIGHT-1M"
            )
            if value is not None:
                self.see(int(value))
            if code in (418, 429):
                self.refused += 1
            return original(code, reason, url, method, headers, *rest)

        exchange.on_rest_response = hook


async def write_side(url: str, rest_url: str, wanted: list[date]) -> None:
    async with connection(url) as conn:
        async with ExchangeResource(rest_url=rest_url).open() as client:
            tally = WeightTally()
            tally.watch(client.exchange)
            await client.load_markets()
            charged_before = tally.charged()
            t0 = time.perf_counter()
            report = await backfill(
                conn, client, exchange="binance", days_by_symbol={s: wanted for s in SYMBOLS}
            )
            ours_s = time.perf_counter() - t0
            weight = tally.charged() - charged_before
        rows = report.write.inserted
        assert rows == len(SYMBOLS) * len(wanted) * 1440, rows
        stored = pl.DataFrame(
            [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT symbol, timeframe, ts, open, high, low, close, volume, source "
                    "FROM market.candles WHERE exchange = 'binance'"
                )
            ],
            schema=[
                "symbol",
                "timeframe",
                "ts",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "source",
            ],
            orient="row",
        ).with_columns(pl.lit("baseline").alias("exchange"))
        t0 = time.perf_counter()
        await bulk_write(conn, "market.candles", stored)
        base_s = time.perf_counter() - t0
        print(ratio_line("backfill_30d_2sym", rows / ours_s, rows / base_s, " rows/s"))
        print(
            f"  ({rows:,} rows; backfill {ours_s:.1f} s over {report.requests} REST ranges "
            f"(pages of 1000), bulk writer alone {base_s:.2f} s)"
        )
        budget = WEIGHT_PER_MINUTE * ours_s / 60.0
        print(
            f"backfill_weight_budget_used: {weight / budget:.3f} of the budget "
            f"({weight:,} weight in {ours_s:.1f} s; budget {WEIGHT_PER_MINUTE}/min; "
            f"{tally.refused} answers 429/418)"
            if weight
            else "backfill_weight_budget_used: no weight headers"
        )

        t0 = time.perf_counter()
        written = 0
        for symbol in SYMBOLS:
            written += (await rollup_incremental(conn, "binance", symbol)).rows_written
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute(
            "INSERT INTO market.candles (exchange, symbol, timeframe, ts, open, high, low, close,"
            " volume, source) SELECT 'plain', symbol, '5m', time_bucket('5 minutes', ts), "
            "first(open, ts), max(high), min(low), last(close, ts), sum(volume), 'plain' "
            "FROM market.candles WHERE exchange = 'binance' AND timeframe = '1m' "
            "GROUP BY symbol, time_bucket('5 minutes', ts)"
        )
        base_s = time.perf_counter() - t0
        print(ratio_line("rollup_30d_2sym", rows / ours_s, rows / base_s, " minutes/s"))
        print(
            f"  (5m..1d, exact sums, watermark: {written:,} bars in {ours_s:.2f} s; baseline "
            f"one level of {rows // 5:,} 5m bars in {base_s:.2f} s)"
        )


@contextmanager
def emulator_process() -> Iterator[str]:
    """``ats emulator`` in a process of its own, as an exchange is: its CPU is not ours."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = datetime.fromtimestamp(FIXED_START_MS / 1000, UTC).isoformat()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ats_pipelines.cli.main",
            "emulator",
            "--port",
            str(port),
            "--start",
            start,
            "--symbols",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def main() -> None:
    days = int(os.environ.get("ATS_BENCH_DAYS", "30"))
    wanted = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    async with scratch_url("ats_bench_md") as url:
        with emulator_process() as rest_url:
            await write_side(url, rest_url, wanted)
        # statistics as autovacuum would leave them (fresh rows have none: the planner then
        # scans instead of using the key, ~20x slower)
        async with connection(url) as conn:
            await conn.execute("ANALYZE market.candles")
        await asyncio.to_thread(read_api, url, wanted)


def read_api(db_url: str, days: list[date]) -> None:
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
    with MarketData(db_url, exchange="binance", redis_url=None) as md:
        samples = timed(
            lambda: md.get_bars("BTC/USDT", "1m", end - timedelta(minutes=500), end), 2000
        )
        assert md.get_bars("BTC/USDT", "1m", end - timedelta(minutes=500), end).height == 500
        print(latency_line("get_bars_last_500", samples))
        tfs = ["1m", "5m", "15m", "1h", "4h", "1d"]
        samples = timed(
            lambda: md.get_multi_timeframe("BTC/USDT", tfs, end, timedelta(days=1)), 200, warmup=5
        )
        view = md.get_multi_timeframe("BTC/USDT", tfs, end, timedelta(days=1))
        assert view.height == 1440 and view["1d_close"].null_count() == 0
        print(latency_line("get_multi_timeframe_1d_6tf", samples))


if __name__ == "__main__":
    asyncio.run(main())
