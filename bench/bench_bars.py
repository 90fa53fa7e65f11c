"""Bar aggregation throughput and latency against a plain polars group_by, in the same process.

    uv run --frozen python bench/bench_bars.py [--trades 3000000]

Prints ``name: ours N/s, baseline M/s, ratio R`` for the batch path (six timeframes), and
``name: p50 X us, p99 Y us`` for the live path's per-trade cost (timer overhead included), and
the live path's untimed throughput against the same batch baseline, for scale. The baseline
is what one would write without caring for exactness: a polars group_by per timeframe with
polars' own sums.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from ats_pipelines.lib.bars import BarAggregator, aggregate_trades
from ats_pipelines.lib.timeframes import DEFAULT_TIMEFRAMES, floor_expr


def synthetic_trades(n: int, seed: int = 42) -> pl.DataFrame:
    """A seeded random walk: ~20 trades/s over the span, ids rising with time like Binance."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(50.0, n).astype(np.int64)  # ms between trades; many share a ms
    ts = 1_700_000_000_000 + np.cumsum(gaps)
    price = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 2e-5, n)))
    price = np.round(price, 2)
    amount = np.round(rng.lognormal(-4, 1.5, n), 5) + 1e-5
    side = np.where(rng.random(n) < 0.5, "buy", "sell")
    ids = np.arange(10_000_000, 10_000_000 + n).astype(str)
    return pl.DataFrame(
        {"timestamp": ts, "id": ids, "side": side, "price": price, "amount": amount}
    )


def baseline(trades: pl.DataFrame) -> list[pl.DataFrame]:
    out = []
    for tf in DEFAULT_TIMEFRAMES:
        out.append(
            trades.group_by(floor_expr(pl.col("timestamp"), tf).alias("ts"))
            .agg(
                pl.col("price").first().alias("open"),
                pl.col("price").max().alias("high"),
                pl.col("price").min().alias("low"),
                pl.col("price").last().alias("close"),
                pl.col("amount").sum().alias("volume"),
                (pl.col("price") * pl.col("amount")).sum().alias("quote_volume"),
                pl.len().alias("trade_count"),
                pl.col("amount").filter(pl.col("side") == "buy").sum().alias("taker_buy_volume"),
            )
            .sort("ts")
        )
    return out


def best_of(runs: int, fn, *args) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=3_000_000)
    parser.add_argument("--live-trades", type=int, default=1_000_000)
    args = parser.parse_args()
    trades = synthetic_trades(args.trades)
    n = trades.height

    ours = best_of(3, lambda t: aggregate_trades(t, exchange="x", symbol="BTC/USDT"), trades)
    base = best_of(3, baseline, trades)
    print(
        f"batch_6tf_{n}_trades: ours {n / ours:,.0f}/s, baseline {n / base:,.0f}/s, "
        f"ratio {base / ours:.2f}"
    )

    rows = trades.head(args.live_trades).select("timestamp", "price", "amount", "side", "id").rows()
    agg = BarAggregator("x", "BTC/USDT", grace_ms=2_000)
    on_trade, clock = agg.on_trade, time.perf_counter_ns
    lat = np.empty(len(rows), dtype=np.int64)
    for i, (ts, price, amount, side, tid) in enumerate(rows):
        t0 = clock()
        on_trade(ts, price, amount, side, tid)
        lat[i] = clock() - t0
        if i & 1023 == 0:
            agg.drain()
    p50, p99 = np.percentile(lat, [50, 99]) / 1000
    print(f"live_on_trade_6tf: p50 {p50:.2f} us, p99 {p99:.2f} us")
    untimed = BarAggregator("x", "BTC/USDT", grace_ms=2_000)
    start = time.perf_counter()
    untimed.on_trades(rows)
    loop = time.perf_counter() - start
    print(
        f"live_6tf_{len(rows)}_trades: ours {len(rows) / loop:,.0f}/s, "
        f"baseline {n / base:,.0f}/s, ratio {base / n * len(rows) / loop:.2f}"
    )


if __name__ == "__main__":
    main()
