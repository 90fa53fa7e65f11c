"""Analyzer runs on real candles in the real database: signals and watermark move together,
exactly once — across incremental runs, concurrent runs, and crashes before the commit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import uuid
from datetime import datetime, timedelta

import asyncpg
import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.signals.analyzer import (
    AnalyzerBatch,
    AnalyzerTarget,
    run_analyzer,
    watermark,
)
from ats_pipelines.signals.config import TrendParams
from ats_pipelines.signals.trend import TrendSignal, detect_trend_signals
from tests.signals.conftest import write_bars

pytestmark = pytest.mark.integration

PARAMS = TrendParams(swing=3, lookback=48, sensitivity=0.001)
STEP = timedelta(minutes=5)


@pytest.fixture
async def series(
    db_url: str, exchange_name: str, eth_btc_5m: pl.DataFrame
) -> tuple[AnalyzerTarget, pl.DataFrame]:
    bars = eth_btc_5m.head(1500)
    await write_bars(db_url, exchange_name, "ETH/BTC", "5m", bars)
    target = AnalyzerTarget(f"trend_{uuid.uuid4().hex[:8]}", exchange_name, "ETH/BTC", "5m")
    return target, bars


def last_ts(bars: pl.DataFrame, back: int = 1) -> datetime:
    return bars["ts"][-back]


def after_end(bars: pl.DataFrame) -> datetime:
    return last_ts(bars) + STEP


async def stored(conn: asyncpg.Connection, target: AnalyzerTarget) -> list[TrendSignal]:
    rows = await conn.fetch(
        "SELECT ts, signal_type, price, details FROM signals.detected_signals "
        "WHERE analyzer_id = $1 AND exchange = $2 AND symbol = $3 AND timeframe = $4 "
        "ORDER BY ts, signal_type DESC",
        target.analyzer_id,
        target.exchange,
        target.symbol,
        target.timeframe,
    )
    return [
        TrendSignal(r["ts"], r["signal_type"], r["price"], json.loads(r["details"])) for r in rows
    ]


async def test_a_run_writes_the_signals_and_moves_the_watermark(
    conn: asyncpg.Connection, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series
    expected = detect_trend_signals(bars, PARAMS)
    assert len(expected) > 10
    result = await run_analyzer(conn, target, PARAMS, now=after_end(bars))
    assert result.bars_new == len(bars) and result.inserted == len(expected)
    assert result.watermark_from is None and result.watermark_to == last_ts(bars)
    assert await stored(conn, target) == expected
    assert await watermark(conn, target) == last_ts(bars)

    again = await run_analyzer(conn, target, PARAMS, now=after_end(bars) + timedelta(days=1))
    assert again.batches == [] and again.watermark_to == last_ts(bars)
    assert await stored(conn, target) == expected


async def test_only_closed_bars_are_analysed(
    conn: asyncpg.Connection, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series
    still_open = last_ts(bars) + timedelta(minutes=4, seconds=59)
    result = await run_analyzer(conn, target, PARAMS, now=still_open)
    assert result.watermark_to == last_ts(bars, back=2)
    result = await run_analyzer(conn, target, PARAMS, now=after_end(bars))
    assert result.bars_new == 1 and result.watermark_to == last_ts(bars)


async def test_incremental_runs_and_small_batches_equal_one_pass(
    conn: asyncpg.Connection, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series
    first = bars["ts"][0]
    # the clock advances unevenly: 1 bar, 47 bars, a day, ... ; batches of 97 bars
    for bars_closed in (1, 48, 49, 337, 600, 1111, len(bars)):
        await run_analyzer(conn, target, PARAMS, now=first + bars_closed * STEP, batch_bars=97)
        assert await watermark(conn, target) == bars["ts"][bars_closed - 1]
    assert await stored(conn, target) == detect_trend_signals(bars, PARAMS)


async def test_concurrent_runs_of_one_series_write_each_signal_once(
    db_url: str, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series

    async def one() -> int:
        async with connection(db_url) as c:
            return (
                await run_analyzer(c, target, PARAMS, now=after_end(bars), batch_bars=300)
            ).inserted

    counts = await asyncio.gather(one(), one(), one())
    expected = detect_trend_signals(bars, PARAMS)
    assert sum(counts) == len(expected)
    async with connection(db_url) as c:
        assert await stored(c, target) == expected


class Crash(RuntimeError):
    pass


async def test_a_crash_after_writing_but_before_commit_moves_nothing(
    conn: asyncpg.Connection, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series
    seen: list[AnalyzerBatch] = []

    async def crash_on_second(batch: AnalyzerBatch) -> None:
        # the batch's rows are written inside the transaction at this point
        inside = await conn.fetchval(
            "SELECT count(*) FROM signals.detected_signals WHERE analyzer_id = $1",
            target.analyzer_id,
        )
        seen.append(batch)
        if len(seen) == 2:
            assert inside == len(seen[0].signals) + batch.inserted and batch.inserted > 0
            raise Crash("killed before commit")

    with pytest.raises(Crash):
        await run_analyzer(
            conn, target, PARAMS, now=after_end(bars), batch_bars=700, before_commit=crash_on_second
        )
    # the first batch committed; the second left neither signals nor watermark behind
    assert await watermark(conn, target) == seen[0].watermark_to
    assert await stored(conn, target) == seen[0].signals
    await run_analyzer(conn, target, PARAMS, now=after_end(bars), batch_bars=700)
    assert await stored(conn, target) == detect_trend_signals(bars, PARAMS)


_KILLED_RUN = textwrap.dedent("""
    import asyncio, sys
    from datetime import datetime
    import asyncpg
    from ats_pipelines.signals.analyzer import AnalyzerTarget, run_analyzer
    from ats_pipelines.signals.config import TrendParams

    async def main():
        url, app, analyzer, exchange, now = sys.argv[1:6]
        conn = await asyncpg.connect(url, server_settings={"application_name": app})
        target = AnalyzerTarget(analyzer, exchange, "ETH/BTC", "5m")

        async def hold(batch):
            print(f"wrote {batch.inserted}", flush=True)
            await asyncio.sleep(120)

        await run_analyzer(conn, target, TrendParams(3, 48, 0.001),
                           now=datetime.fromisoformat(now), before_commit=hold)

    asyncio.run(main())
""")


@pytest.mark.slow
async def test_sigkill_in_the_middle_of_the_transaction_moves_nothing(
    conn: asyncpg.Connection, db_url: str, series: tuple[AnalyzerTarget, pl.DataFrame]
) -> None:
    target, bars = series
    app = f"sigkill_{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_RUN,
        db_url,
        app,
        target.analyzer_id,
        target.exchange,
        after_end(bars).isoformat(),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
        expected = detect_trend_signals(bars, PARAMS)
        assert line.strip() == f"wrote {len(expected)}"
        state = await conn.fetchval(
            "SELECT state FROM pg_stat_activity WHERE application_name = $1", app
        )
        assert state == "idle in transaction"
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
    for _ in range(200):  # the server aborts the transaction once it sees the socket close
        if not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app
        ):
            break
        await asyncio.sleep(0.05)
    assert await stored(conn, target) == []
    assert await watermark(conn, target) is None
    await run_analyzer(conn, target, PARAMS, now=after_end(bars))
    assert await stored(conn, target) == expected
