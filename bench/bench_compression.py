"""Native compression of the market tables over a generated month (TimescaleDB Community).

A month of two symbols is generated and written through the bulk writer: 1-minute candles,
trades (``ATS_BENCH_TRADES_PER_MINUTE``, default 20 per symbol) and order-book snapshots (one a
minute, 20 levels a side). The baseline is the same data uncompressed, measured in the same run:

* bytes: each table's total size (heap, indexes, TOAST) before and after ``compress_chunk`` of
  every chunk, with the settings of ``sql/020`` (segment by series, order by time);
* query time: typical reads (a day of one symbol's minutes; a month of hourly bars of one
  symbol; the trades of one symbol's hour; the latest book of a symbol) on the uncompressed
  table, then on the compressed one; medians of ``ATS_BENCH_REPEATS`` (7) runs.

Targets (issue 21): at least 10x on candles and 8x on trades. On an edition without compression
(plain PostgreSQL, the Apache edition) it says so plainly and reports the uncompressed sizes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_database

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.warehouse.rollups import server_edition

DAYS = 30
SYMBOLS = ("BTC/USDT", "ETH/USDT")
START = np.datetime64("2024-04-01T00:00", "m").astype("datetime64[us]").astype(np.int64)
MINUTE_US = 60_000_000
LEVELS = 20
TARGETS = {"market.candles": 10.0, "market.trades": 8.0}
QUERIES = {
    "candles: one symbol's day of 1m": (
        "SELECT * FROM market.candles WHERE exchange = 'binance' AND symbol = 'BTC/USDT' "
        "AND timeframe = '1m' AND ts >= '2024-04-15' AND ts < '2024-04-16'"
    ),
    "candles: a month of hourly bars": (
        "SELECT time_bucket('1 hour', ts), first(open, ts), max(high), min(low), "
        "last(close, ts), sum(volume) FROM market.candles WHERE exchange = 'binance' "
        "AND symbol = 'BTC/USDT' AND timeframe = '1m' GROUP BY 1"
    ),
    "trades: one symbol's hour": (
        "SELECT * FROM market.trades WHERE exchange = 'binance' AND symbol = 'ETH/USDT' "
        "AND ts >= '2024-04-20 10:00' AND ts < '2024-04-20 11:00'"
    ),
    "books: latest snapshot": (
        "SELECT * FROM market.order_book_snapshots WHERE exchange = 'binance' "
        "AND symbol = 'BTC/USDT' AND ts <= '2024-04-25 12:34:56' ORDER BY ts DESC LIMIT 1"
    ),
}


def _walk(rng: np.random.Generator, n: int, start: float) -> np.ndarray:
    return np.round(start * np.exp(np.cumsum(rng.normal(0, 4e-4, n))), 2)


def candles(symbol: str, start_price: float, rng: np.random.Generator) -> pa.Table:
    n = DAYS * 1440
    ts = START + np.arange(n, dtype=np.int64) * MINUTE_US
    close = _walk(rng, n, start_price)
    open_ = np.concatenate([[start_price], close[:-1]])
    high = np.round(np.maximum(open_, close) + rng.integers(0, 30, n) * 0.01, 2)
    low = np.round(np.minimum(open_, close) - rng.integers(0, 30, n) * 0.01, 2)
    volume = np.round(rng.gamma(2.0, 3.0, n), 5)
    trades = rng.integers(20, 900, n)
    return pa.table(
        {
            "exchange": ["binance"] * n,
            "symbol": [symbol] * n,
            "timeframe": ["1m"] * n,
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": np.round(volume * close, 4),
            "trade_count": trades,
            "vwap": np.round((high + low + close) / 3, 4),
            "taker_buy_volume": np.round(volume * rng.random(n), 5),
            "source": ["exchange"] * n,
        }
    )


def trades(symbol: str, start_price: float, per_minute: int, rng: np.random.Generator):
    n = DAYS * 1440 * per_minute
    offsets = np.sort(rng.integers(0, DAYS * 1440 * MINUTE_US // 1000, n)) * 1000
    price = _walk(rng, n, start_price)
    amount = np.round(rng.gamma(1.2, 0.05, n), 5) + 0.00001
    first_id = 3_000_000_000 + int(rng.integers(0, 10**6))
    return pa.table(
        {
            "exchange": ["binance"] * n,
            "symbol": [symbol] * n,
            "ts": pa.array(START + offsets, pa.timestamp("us", tz="UTC")),
            "trade_id": [str(first_id + i) for i in range(n)],
            "price": price,
            "amount": amount,
            "cost": np.round(price * amount, 8),
            "side": np.where(rng.random(n) < 0.5, "buy", "sell").tolist(),
            "source": ["stream"] * n,
        }
    )


def books(symbol: str, start_price: float, rng: np.random.Generator) -> pa.Table:
    n = DAYS * 1440
    mid = _walk(rng, n, start_price)
    steps = np.arange(1, LEVELS + 1) * 0.01
    bids = np.round(mid[:, None] - steps[None, :], 2)
    asks = np.round(mid[:, None] + steps[None, :], 2)
    bid_sizes = np.round(rng.gamma(1.5, 0.4, (n, LEVELS)), 4)
    ask_sizes = np.round(rng.gamma(1.5, 0.4, (n, LEVELS)), 4)
    imbalance = (bid_sizes[:, 0] - ask_sizes[:, 0]) / (bid_sizes[:, 0] + ask_sizes[:, 0])

    def lists(a: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, a.size + 1, LEVELS, dtype=np.int32)), pa.array(a.ravel())
        )

    return pa.table(
        {
            "exchange": ["binance"] * n,
            "symbol": [symbol] * n,
            "ts": pa.array(
                START + np.arange(n, dtype=np.int64) * MINUTE_US, pa.timestamp("us", tz="UTC")
            ),
            "bid_prices": lists(bids),
            "bid_sizes": lists(bid_sizes),
            "ask_prices": lists(asks),
            "ask_sizes": lists(ask_sizes),
            "mid": mid,
            "spread": np.round(asks[:, 0] - bids[:, 0], 2),
            "imbalance_1": imbalance,
            "source": ["stream"] * n,
        }
    )


async def _size(conn: asyncpg.Connection, table: str) -> int:
    size = await conn.fetchval(
        "SELECT sum(total_bytes)::bigint FROM hypertable_detailed_size($1::regclass)", table
    )
    return int(size or 0)


async def _timings(conn: asyncpg.Connection, repeats: int) -> dict[str, float]:
    out = {}
    for name, sql in QUERIES.items():
        await conn.fetch(sql)  # warm the cache: both sides are measured warm
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await conn.fetch(sql)
            runs.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(runs)
    return out


async def _load(conn: asyncpg.Connection, per_minute: int) -> None:
    rng = np.random.default_rng(21)
    for symbol, price in zip(SYMBOLS, (64000.0, 3100.0), strict=True):
        await bulk_write(conn, "market.candles", candles(symbol, price, rng))
        await bulk_write(conn, "market.trades", trades(symbol, price, per_minute, rng))
        await bulk_write(conn, "market.order_book_snapshots", books(symbol, price, rng))
    await conn.execute("VACUUM ANALYZE market.candles, market.trades, market.order_book_snapshots")


async def main() -> None:
    per_minute = int(os.environ.get("ATS_BENCH_TRADES_PER_MINUTE", "20"))
    repeats = int(os.environ.get("ATS_BENCH_REPEATS", "7"))
    tables = ("market.candles", "market.trades", "market.order_book_snapshots")
    async with scratch_database("ats_bench_compression") as conn:
        edition = await server_edition(conn)
        t0 = time.perf_counter()
        await _load(conn, per_minute)
        rows = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608
        print(f"generated a month in {time.perf_counter() - t0:.0f} s: {rows}")
        before = {t: await _size(conn, t) for t in tables}
        if edition != "timescale":
            print(
                f"compression: not available on this server (edition {edition}; native "
                "compression needs TimescaleDB Community, the timescale licence) — "
                + ", ".join(f"{t} {before[t] / 2**20:.1f} MiB uncompressed" for t in tables)
            )
            return
        plain = await _timings(conn, repeats)
        for t in tables:
            await conn.execute(f"SELECT compress_chunk(c) FROM show_chunks('{t}') c")  # noqa: S608
        await conn.execute(
            "VACUUM ANALYZE market.candles, market.trades, market.order_book_snapshots"
        )
        for t in tables:
            after = await _size(conn, t)
            ratio = before[t] / after
            target = (
                f" (target {TARGETS[t]:.0f}x: {'met' if ratio >= TARGETS[t] else 'MISSED'})"
                if t in TARGETS
                else ""
            )
            print(
                f"{t} bytes: compressed {after / 2**20:.1f} MiB, baseline uncompressed "
                f"{before[t] / 2**20:.1f} MiB, ratio {ratio:.1f}x{target}"
            )
        packed = await _timings(conn, repeats)
        for name in QUERIES:
            print(
                f"{name}: compressed {packed[name]:.1f} ms, baseline uncompressed "
                f"{plain[name]:.1f} ms, ratio {plain[name] / packed[name]:.2f} (speed-up)"
            )


if __name__ == "__main__":
    asyncio.run(main())
