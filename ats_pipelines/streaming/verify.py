"""The stream's output checked against the emulator's synthetic market (the oracle of the
streaming tests and of ``bench/bench_chaos.py``): every stored trade and bar, field for field
(floats bit for bit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ats_pipelines.emulator.synthetic import SyntheticMarket
from ats_pipelines.lib.timeframes import floor_ms
from ats_pipelines.streaming.rows import CANDLE_VALUES

BAR_FIELDS = tuple(c for c in CANDLE_VALUES if c != "vwap")  # what a kline also has


@dataclass
class Comparison:
    """Stored bars against the oracle's klines: every difference named."""

    compared: int = 0
    missing: list[tuple[str, str, int]] = field(default_factory=list)
    wrong: list[tuple[str, str, int, tuple, tuple]] = field(default_factory=list)
    extra: list[tuple[str, str, int]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong or self.extra)


@dataclass
class TradeComparison:
    """Stored trades against the oracle's over the stored id range."""

    count: int = 0  # rows stored
    expected: int = 0  # the oracle's trades in the stored id range
    missing: list[int] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)
    duplicated: int = 0


def kline_values(k: Any) -> tuple[float, float, float, float, float, float, int, float]:
    """A kline as the stored candle's ``BAR_FIELDS``."""
    return (
        float(k.open),
        float(k.high),
        float(k.low),
        float(k.close),
        float(k.volume),
        float(k.quote_volume),
        k.trades,
        float(k.taker_buy_base),
    )


async def compare_bars(
    conn: asyncpg.Connection,
    market: SyntheticMarket,
    symbol_id: str,
    where: tuple[str, str],
    timeframes: tuple[str, ...],
    span: tuple[int, int],
    now_ms: int,
) -> Comparison:
    """Every bucket of each timeframe from the one holding ``span[0]`` to those over by
    ``span[1]`` (closed before): stored (``where`` = exchange, symbol) == kline."""
    exchange, symbol = where
    out = Comparison()
    for tf in timeframes:
        first = floor_ms(span[0], tf)
        last = floor_ms(span[1], tf)  # buckets opening before this are over
        klines = {
            k.open_time: k
            for k in market.klines(symbol_id, tf, first, last - 1, 1000, now_ms)
            if k.open_time < last and k.trades > 0
        }
        rows = await conn.fetch(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, open, high, low, close, "
            "volume, quote_volume, trade_count, taker_buy_volume, source FROM market.candles "
            "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
            "AND ts >= to_timestamp($4 / 1000.0) AND ts < to_timestamp($5 / 1000.0)",
            exchange,
            symbol,
            tf,
            first,
            last,
        )
        stored = {r["ts_ms"]: r for r in rows}
        for ts, k in klines.items():
            out.compared += 1
            row = stored.get(ts)
            if row is None:
                out.missing.append((symbol, tf, ts))
                continue
            out.sources[row["source"]] = out.sources.get(row["source"], 0) + 1
            got, want = tuple(row[name] for name in BAR_FIELDS), kline_values(k)
            if got != want:
                out.wrong.append((symbol, tf, ts, got, want))
        out.extra += [(symbol, tf, ts) for ts in stored if ts not in klines]
    return out


async def compare_trades(
    conn: asyncpg.Connection, market: SyntheticMarket, symbol_id: str, where: tuple[str, str]
) -> TradeComparison:
    """Stored trades (``where`` = exchange, symbol) against the market's, over the stored id
    range."""
    rows = await conn.fetch(
        "SELECT trade_id::bigint AS id, (extract(epoch FROM ts) * 1000)::bigint AS ts, price, "
        "amount, side FROM market.trades WHERE exchange = $1 AND symbol = $2 ORDER BY 1",
        *where,
    )
    if not rows:
        return TradeComparison()
    ids = [r["id"] for r in rows]
    truth = market.trades_between(symbol_id, rows[0]["ts"], max(r["ts"] for r in rows) + 1)
    spec = market.history(symbol_id).symbol.spec
    expected = {
        int(i): (
            int(t),
            p / 10**spec.price_decimals,
            q / 10**spec.qty_decimals,
            "sell" if m else "buy",
        )
        for i, t, p, q, m in zip(
            truth.ids.tolist(),
            truth.ts.tolist(),
            truth.price.tolist(),
            truth.qty.tolist(),
            truth.buyer_maker.tolist(),
            strict=True,
        )
        if ids[0] <= int(i) <= ids[-1]
    }
    got = {r["id"]: (r["ts"], r["price"], r["amount"], r["side"]) for r in rows}
    return TradeComparison(
        count=len(rows),
        expected=len(expected),
        missing=sorted(set(expected) - set(got)),
        wrong=sorted(i for i in got if i in expected and got[i] != expected[i]),
        duplicated=len(ids) - len(set(ids)),
    )
