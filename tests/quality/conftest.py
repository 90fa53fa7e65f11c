"""Real market data from ../shared/testdata in the platform's row shape, for the quality suites.

Every frame is built from the recorded files unchanged (only renamed into the table columns);
tests make broken copies of them. Database tests store rows under their own exchange name
(``q<hex>``), so they never see each other's rows in the shared session database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.lib.book import L2Book, book_metrics_frame

EXCHANGE = "binance"
XRP = "XRP/ETH"
# a clock after every recorded file (the suites' ts_future rule compares with it)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Partitioned asset checks are a preview feature in Dagster 1.13.
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.BetaWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"))


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code (Dagster assets run their own event loops)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def utc_ms(column: str) -> pl.Expr:
    return pl.from_epoch(column, time_unit="ms").dt.replace_time_zone("UTC")


@pytest.fixture
def exchange_name() -> str:
    return f"q{uuid.uuid4().hex[:10]}"


def migrated_database(make_database: Any, prefix: str = "ats_quality") -> str:
    """A fresh, migrated database (the quality tests read whole tables and windows)."""
    url = make_database(prefix)

    async def body() -> None:
        async with connection(url) as conn:
            await migrate(conn)

    run_sync(body())
    return url


@pytest.fixture(scope="session")
def quality_db(make_database: Any) -> str:
    """One fresh database for the quality tests; each test stores under its own exchange."""
    return migrated_database(make_database)


@pytest.fixture(scope="session")
def xrp_candles(testdata: Path) -> pl.DataFrame:
    """Binance XRP/ETH 1m candles (2,469 bars: the minutes that had trades)."""
    raw = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-1m.feather")
    return raw.select(
        pl.lit(EXCHANGE).alias("exchange"),
        pl.lit(XRP).alias("symbol"),
        pl.lit("1m").alias("timeframe"),
        pl.col("date").dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )


@pytest.fixture(scope="session")
def xrp_trades(testdata: Path) -> pl.DataFrame:
    """The 12,477 public trades of the same window."""
    raw = pl.read_parquet(testdata / "freqtrade" / "XRP_ETH-trades.parquet")
    return raw.select(
        pl.lit(EXCHANGE).alias("exchange"),
        pl.lit(XRP).alias("symbol"),
        utc_ms("timestamp").dt.cast_time_unit("us").alias("ts"),
        pl.col("id").alias("trade_id"),
        "price",
        "amount",
        "cost",
        "side",
    )


@pytest.fixture(scope="session")
def xrp_empty_minutes(xrp_candles: pl.DataFrame, xrp_trades: pl.DataFrame) -> pl.DataFrame:
    """Minutes of the window without a single trade: Binance has no kline for them (the
    exchange's "nothing"), which is what ``market.empty_intervals`` records once confirmed."""
    start, end = xrp_candles["ts"].min(), xrp_candles["ts"].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    minutes = pl.datetime_range(start, end, "1m", eager=True, time_zone="UTC").alias("ts")
    traded = xrp_trades.select(pl.col("ts").dt.truncate("1m")).unique()
    empty = pl.DataFrame(minutes).join(traded, on="ts", how="anti")
    return empty.select(
        pl.lit(EXCHANGE).alias("exchange"),
        pl.lit(XRP).alias("symbol"),
        pl.col("ts").dt.cast_time_unit("us"),
    )


def freqtrade_candles(testdata: Path, name: str, symbol: str, timeframe: str) -> pl.DataFrame:
    path = testdata / "freqtrade" / name
    if path.suffix == ".json":
        raw = pl.DataFrame(
            json.loads(path.read_text()),
            orient="row",
            schema=["t", "open", "high", "low", "close", "volume"],
        )
        ts = utc_ms("t")
    else:
        raw = pl.read_ipc(path)
        ts = pl.col("date")
    return raw.select(
        pl.lit(EXCHANGE).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(timeframe).alias("timeframe"),
        ts.dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )


def _capture(testdata: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    folder = testdata / "cryptofeed"
    snapshots: dict[str, Any] = {}
    for line in (folder / "BINANCE.http.0.0").read_text().splitlines():
        if line.strip():
            url, rest = line.split(" -> ", 1)
            snapshots[url.split("symbol=")[1].split("&")[0]] = json.loads(rest.split(": ", 1)[1])
    messages = [
        json.loads(line.split(": ", 1)[1])["data"]
        for line in (folder / "BINANCE.ws.1.0").read_text().splitlines()
        if line.strip() and not line.startswith("wss://")
    ]
    return snapshots, messages


@pytest.fixture(scope="session")
def real_books(testdata: Path) -> pl.DataFrame:
    """Top-10 books of the Binance spot capture after every applied diff (REST snapshot plus
    depth updates, rebuilt with the platform's L2Book), with their metrics, one per
    symbol and event time."""
    snapshots, messages = _capture(testdata)
    books = {s: L2Book(s) for s in snapshots}
    for s, snap in snapshots.items():
        books[s].load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    rows = []
    for msg in messages:
        if msg.get("e") == "depthUpdate" and books[msg["s"]].apply_event(msg):
            bids, asks = books[msg["s"]].top(10)
            rows.append(
                {
                    "symbol": msg["s"],
                    "t": msg["E"],
                    "bid_prices": [b[0] for b in bids],
                    "bid_sizes": [b[1] for b in bids],
                    "ask_prices": [a[0] for a in asks],
                    "ask_sizes": [a[1] for a in asks],
                }
            )
    frame = pl.DataFrame(rows).unique(["symbol", "t"], keep="last", maintain_order=True)
    frame = frame.select(
        pl.lit(EXCHANGE).alias("exchange"),
        "symbol",
        utc_ms("t").dt.cast_time_unit("us").alias("ts"),
        "bid_prices",
        "bid_sizes",
        "ask_prices",
        "ask_sizes",
    )
    return book_metrics_frame(frame)


def book_aggregates(books: pl.DataFrame, every: str) -> pl.DataFrame:
    """Per-bucket mid OHLC, spread and imbalance means of snapshots (the aggregate's shape)."""
    return (
        books.sort("ts")
        .group_by_dynamic("ts", every=every, group_by=["exchange", "symbol"])
        .agg(
            pl.len().alias("snapshots"),
            pl.col("mid").first().alias("mid_open"),
            pl.col("mid").max().alias("mid_high"),
            pl.col("mid").min().alias("mid_low"),
            pl.col("mid").last().alias("mid_close"),
            pl.col("spread").mean().alias("spread_mean"),
            pl.col("spread").max().alias("spread_max"),
            pl.col("spread_bps").mean().alias("spread_bps_mean"),
            *[pl.col(f"imbalance_{n}").mean().alias(f"imbalance_{n}_mean") for n in (1, 5, 10)],
        )
    )


def trade_flow(trades: pl.DataFrame) -> pl.DataFrame:
    buy = pl.col("side") == "buy"
    return (
        trades.sort("ts")
        .group_by_dynamic("ts", every="1m", group_by=["exchange", "symbol"])
        .agg(
            pl.col("amount").filter(buy).sum().alias("buy_volume"),
            pl.col("amount").filter(~buy).sum().alias("sell_volume"),
            buy.sum().cast(pl.Int64).alias("buy_count"),
            (~buy).sum().cast(pl.Int64).alias("sell_count"),
            ((pl.col("price") * pl.col("amount")).sum() / pl.col("amount").sum()).alias("vwap"),
        )
    )


def predictions_of(candles: pl.DataFrame, model_id: str = "m-test") -> pl.DataFrame:
    """Predictions in ``signals.signals`` shape: a softmax of the 5-bar return per bar."""
    frame = (
        candles.sort("ts")
        .with_columns((pl.col("close") / pl.col("close").shift(5) - 1).alias("ret_5"))
        .drop_nulls("ret_5")
    )
    r = frame["ret_5"].to_numpy() * 200
    logits = np.stack([r, -r, np.zeros_like(r)], axis=1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    classes = np.array(["BUY", "SELL", "HOLD"])
    best = p.argmax(axis=1)
    probas = [json.dumps(dict(zip(classes.tolist(), row.tolist(), strict=True))) for row in p]
    return frame.select("exchange", "symbol", pl.lit("1m").alias("tf"), "ts").with_columns(
        pl.lit(model_id).alias("model_id"),
        pl.Series("pred", classes[best]),
        pl.Series("proba", p[np.arange(len(p)), best]),
        pl.Series("probas", probas),
        pl.lit(3.5).alias("latency_ms"),
    )
