"""Fixtures for the signals tests: real candles loaded into the session database under a test's
own exchange name, settings naming a test's own analyzer and coordinator, a sync query helper.

Every test stores its bars under its own exchange (``s<hex>``) and writes signals under its own
analyzer/coordinator ids, so tests never see each other's rows in the shared database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.lib.timeframes import timeframe_ms
from ats_pipelines.signals.config import CoordinatorRules, SignalsSettings, TrendParams


def run_sync(coro: Any) -> Any:
    """Run a coroutine from a sync test (sensors and assets run their own event loops)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def read_freqtrade(path: Path) -> pl.DataFrame:
    """A freqtrade OHLCV feather as ``ts, open, high, low, close, volume`` (ts UTC, ms)."""
    frame = pl.read_ipc(path)
    return frame.select(
        pl.col("date").dt.cast_time_unit("ms").alias("ts"), "open", "high", "low", "close", "volume"
    )


def roll_up(bars: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Finished ``timeframe`` bars of a series (a bucket is kept only when it is complete, like
    the rollup asset writes them)."""
    step = bars["ts"].diff().drop_nulls().min()
    assert isinstance(step, timedelta)
    per_bucket = timeframe_ms(timeframe) // int(step.total_seconds() * 1000)
    return (
        bars.sort("ts")
        .group_by_dynamic("ts", every=timeframe, closed="left", label="left")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("n"),
        )
        .filter(pl.col("n") == per_bucket)
        .drop("n")
    )


async def write_bars(
    db_url: str, exchange: str, symbol: str, timeframe: str, bars: pl.DataFrame
) -> int:
    rows = bars.with_columns(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(timeframe).alias("timeframe"),
        pl.lit("test").alias("source"),
    )
    async with connection(db_url) as conn:
        return (await bulk_write(conn, "market.candles", rows)).inserted


@pytest.fixture(scope="session")
def eth_btc_5m(testdata: Path) -> pl.DataFrame:
    """Real ETH/BTC 5m candles, 2018-01-10 .. 2018-01-30 (5,760 bars)."""
    return read_freqtrade(testdata / "freqtrade" / "ETH_BTC-5m.feather")


@pytest.fixture
def exchange_name() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


TEST_PARAMS = {
    "5m": TrendParams(swing=3, lookback=48, sensitivity=0.001),
    "15m": TrendParams(swing=3, lookback=32, sensitivity=0.001),
    "1h": TrendParams(swing=2, lookback=16, sensitivity=0.002),
}


def make_settings(
    exchange: str,
    symbols: tuple[str, ...] = ("ETH/BTC",),
    *,
    timeframes: tuple[str, ...] = ("5m", "15m", "1h"),
    coordinator: tuple[str, ...] = ("15m", "1h"),
    window: timedelta = timedelta(hours=4),
    **overrides: Any,
) -> SignalsSettings:
    tag = uuid.uuid4().hex[:8]
    rules = CoordinatorRules(coordinator_id=f"coord_{tag}", timeframes=coordinator, window=window)
    settings = SignalsSettings(
        exchange=exchange,
        symbols=symbols,
        timeframes=timeframes,
        analyzer_id=f"trend_{tag}",
        trend_params=dict(TEST_PARAMS),
        coordinator=rules,
    )
    return replace(settings, **overrides) if overrides else settings


@pytest.fixture
def query(db_url: str) -> Callable[..., list[Any]]:
    """``query(sql, *args)`` -> rows, on the session database."""

    def run(sql: str, *args: Any) -> list[Any]:
        async def body() -> list[Any]:
            async with connection(db_url) as conn:
                return list(await conn.fetch(sql, *args))

        return run_sync(body())

    return run
