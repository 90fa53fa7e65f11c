"""Fixtures of the read-API tests: real data stored once under a fresh exchange name, providers
on the session database, and a Redis server of the test's own (started from ``redis-server``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.replay_data import load_cryptofeed_binance
from ats_pipelines.lib.book import L2Book
from ats_pipelines.reader import MarketData
from ats_pipelines.warehouse.flows import aggregate_order_books, store_order_books
from ats_pipelines.warehouse.rollups import rollup_incremental

SYMBOL = "XRP/ETH"
BOOK_SYMBOL = "NKN/USDT"


def run_sync(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class Stored:
    exchange: str
    minutes: pl.DataFrame  # the real XRP/ETH 1m file
    five: pl.DataFrame  # the real XRP/ETH 5m file
    books: pl.DataFrame  # NKN/USDT snapshots rebuilt from the real Binance capture


def _books(testdata: Path) -> pl.DataFrame:
    data = load_cryptofeed_binance(
        testdata / "cryptofeed" / "BINANCE.ws.1.0", testdata / "cryptofeed" / "BINANCE.http.0.0"
    )
    snapshot, diffs = data["NKNUSDT"]
    book = L2Book("NKNUSDT")
    book.load_snapshot(snapshot.last_update_id, snapshot.bids, snapshot.asks)
    rows = []
    for diff in diffs:
        book.apply(diff.first_id, diff.last_id, diff.bids, diff.asks)
        top = book.snapshot(10)
        rows.append(
            {
                "ts": datetime.fromtimestamp(diff.event_time / 1000, UTC),
                "bid_prices": top.bid_prices,
                "bid_sizes": top.bid_sizes,
                "ask_prices": top.ask_prices,
                "ask_sizes": top.ask_sizes,
                "sequence": diff.last_id,
            }
        )
    return pl.DataFrame(rows).unique("ts", keep="last", maintain_order=True)


@pytest.fixture(scope="session")
def stored(testdata: Path, db_url: str) -> Stored:
    """Real XRP/ETH minutes (bulk writer) rolled up to 5m..1d; real NKN/USDT books and their
    1s/1m aggregates; all under one fresh exchange name."""
    exchange = f"m{uuid.uuid4().hex[:10]}"
    minutes = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-1m.feather")
    five = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-5m.feather")
    books = _books(testdata)
    rows = minutes.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(SYMBOL).alias("symbol"),
        pl.lit("1m").alias("timeframe"),
        pl.col("date").dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit("testdata").alias("source"),
    )

    async def body() -> None:
        async with connection(db_url) as conn:
            await bulk_write(conn, "market.candles", rows)
            await rollup_incremental(conn, exchange, SYMBOL)
            await store_order_books(
                conn, books, exchange=exchange, symbol=BOOK_SYMBOL, source="testdata"
            )
            day = datetime(2021, 10, 12, tzinfo=UTC)
            for tf in ("1s", "1m"):
                await aggregate_order_books(
                    conn, "apache", tf, exchange, BOOK_SYMBOL, day, day.replace(day=13)
                )

    run_sync(body())
    return Stored(exchange, minutes, five, books)


@pytest.fixture
def provider(db_url: str, stored: Stored) -> Iterator[MarketData]:
    """A provider without a hot cache."""
    with MarketData(db_url, exchange=stored.exchange, redis_url=None) as md:
        yield md


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port (nothing persisted), stopped afterwards."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
