"""Fixtures for the features tests: market data (real XRP/ETH minutes from the test data and a
seeded synthetic series), written to the database through the bulk writer or straight to a
lake, and Feast stores on temporary registries.

Every test keeps its rows under its own exchange name, so tests sharing the session database
never see each other's candles.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.features.catalog import EXPORT_TIMEFRAMES
from ats_pipelines.features.export import (
    BOOK_DATASET,
    BOOK_SCHEMA,
    CANDLE_SCHEMA,
    candles_dataset,
)
from ats_pipelines.features.lake import SYMBOL_KEY, Lake, write_if_changed
from ats_pipelines.lib.bars import rollup

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
SYMBOL = "XRP/ETH"
STORE_TYPE = "ats_pipelines.features.offline_store.AtsDuckDBOfflineStore"


def run_sync(coro: Any) -> Any:
    """Run a coroutine from a sync test (Dagster assets and Feast run their own loops)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session", autouse=True)
def _no_telemetry() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_USAGE", "False")
        patch.setenv("DAGSTER_TELEMETRY_DISABLED", "1")
        yield


@pytest.fixture
def exchange() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


def xrp_eth_minutes(testdata: Path, exchange: str) -> pl.DataFrame:
    """Real Binance XRP/ETH 1m candles (2019-10-11 .. 13, with gaps)."""
    raw = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-1m.feather")
    return raw.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(SYMBOL).alias("symbol"),
        pl.lit("1m").alias("timeframe"),
        pl.col("date").dt.convert_time_zone("UTC").dt.cast_time_unit("ms").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )


def synthetic_minutes(
    exchange: str, symbol: str, days: int, seed: int = 7, start: datetime = START
) -> pl.DataFrame:
    """A gap-free seeded random walk with taker volume, VWAP and trade counts."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 4e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 4e-4, n)))
    volume = rng.lognormal(2, 1, n)
    vwap = np.clip((open_ + close + high + low) / 4, low, high)
    return pl.DataFrame(
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": "1m",
            "ts": pl.datetime_range(
                start,
                start + timedelta(minutes=n - 1),
                "1m",
                eager=True,
                time_unit="ms",
                time_zone="UTC",
            ),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * vwap,
            "trade_count": rng.integers(1, 50, n),
            "vwap": vwap,
            "taker_buy_volume": volume * rng.uniform(0, 1, n),
        }
    )


def all_timeframes(minutes: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """1m bars and their rollups to every exported timeframe."""
    frames = {"1m": minutes}
    source = minutes
    for tf in EXPORT_TIMEFRAMES[1:]:
        frames[tf] = rollup(source, tf).drop("first_trade_id", "last_trade_id")
        source = frames[tf]
    return frames


def synthetic_book(minutes: pl.DataFrame, seed: int = 3, every: int = 1) -> pl.DataFrame:
    """1m order-book aggregates for every ``every``-th minute (gaps where the book was absent)."""
    rows = minutes.gather_every(every)
    rng = np.random.default_rng(seed)
    n = rows.height
    mid = rows["close"].to_numpy()
    spread = mid * rng.uniform(1e-5, 5e-4, n)
    return pl.DataFrame(
        {
            "exchange": rows["exchange"],
            "symbol": rows["symbol"],
            "ts": rows["ts"].dt.cast_time_unit("us"),
            "snapshots": rng.integers(1, 60, n),
            "mid_open": mid,
            "mid_high": mid * 1.0001,
            "mid_low": mid * 0.9999,
            "mid_close": mid,
            "spread_mean": spread,
            "spread_max": spread * 1.5,
            "spread_bps_mean": spread / mid * 1e4,
            "imbalance_1_mean": rng.uniform(-1, 1, n),
            "imbalance_5_mean": rng.uniform(-1, 1, n),
            "imbalance_10_mean": rng.uniform(-1, 1, n),
            "bid_depth_5pct_mean": rng.uniform(10, 100, n),
            "ask_depth_5pct_mean": rng.uniform(10, 100, n),
        }
    )


def candle_table(frame: pl.DataFrame) -> pa.Table:
    """Bars as the lake's candle schema (columns a frame lacks are null)."""
    frame = frame.with_columns(pl.col("ts").dt.cast_time_unit("us"))
    missing = [pl.lit(None).alias(f.name) for f in CANDLE_SCHEMA if f.name not in frame.columns]
    return frame.with_columns(missing).select(CANDLE_SCHEMA.names).to_arrow().cast(CANDLE_SCHEMA)


def write_lake(
    lake: Lake, frames: dict[str, pl.DataFrame], book: pl.DataFrame | None = None
) -> None:
    """Put candles (and book aggregates) straight into a lake, one file per day."""
    datasets = [(candles_dataset(tf), candle_table(f)) for tf, f in frames.items()]
    if book is not None:
        datasets.append((BOOK_DATASET, book.select(BOOK_SCHEMA.names).to_arrow().cast(BOOK_SCHEMA)))
    for dataset, table in datasets:
        frame = pl.DataFrame(pl.from_arrow(table))
        for (exchange, symbol, day), part in frame.with_columns(
            _day=pl.col("ts").dt.date()
        ).group_by("exchange", "symbol", "_day"):
            write_if_changed(
                lake.partition_path(dataset, str(exchange), str(symbol), day),
                part.drop("_day").sort("ts").to_arrow().cast(table.schema),
                {SYMBOL_KEY: str(symbol)},
            )


async def load_market(
    url: str,
    frames: dict[str, pl.DataFrame],
    book: pl.DataFrame | None = None,
    on_conflict: str = "nothing",
) -> None:
    """Write candles of every timeframe (and book aggregates) through the bulk writer."""
    async with connection(url) as conn:
        for frame in frames.values():
            rows = frame.with_columns(pl.lit("test").alias("source"))
            await bulk_write(conn, "market.candles", rows, on_conflict=on_conflict)  # type: ignore[arg-type]
        if book is not None:
            await bulk_write(conn, "market.order_book_1m_agg", book, on_conflict=on_conflict)  # type: ignore[arg-type]


def feast_values(folder: Path) -> dict[str, str]:
    return {
        "ATS_FEAST_REGISTRY": str(folder / "registry.db"),
        "ATS_FEAST_ONLINE_STORE": str(folder / "online_store.db"),
    }


def repo_copy(folder: Path, offline_type: str = STORE_TYPE) -> Path:
    """``feature_repo/feature_store.yaml`` in ``folder`` with another offline store type."""
    source = Path(__file__).resolve().parents[2] / "feature_repo" / "feature_store.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feature_store.yaml").write_text(
        source.read_text().replace(f"type: {STORE_TYPE}", f"type: {offline_type}")
    )
    return folder
