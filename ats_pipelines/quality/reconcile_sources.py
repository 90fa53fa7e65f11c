"""The reconciliations' data: stored bars by source, REST klines, DEX trade prices.

A candle row has one source at a time (REST correcting the stream overwrites it), so
"stream vs REST" compares the bars still built by the stream with what REST says about the
same minutes today, and "history vs REST" the bars still from the legacy cache. Only closed
minutes are compared: the stream keeps its open bar partial until the minute ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import polars as pl

from ats_pipelines.dex.birdeye import SOURCE as DEX_SOURCE
from ats_pipelines.migration.config import DEFAULT_SOURCE as HISTORY_SOURCE
from ats_pipelines.quality.loaders import UTC_TS, records_frame
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.reconcile import Reconciliation, asset_of, compare_bars, compare_cex_dex

STREAM_SOURCE = "stream"
MINUTE = timedelta(minutes=1)
BAR_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
PRICE_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "price": pl.Float64,
}

_BARS_BY_SOURCE = """
SELECT exchange, symbol, ts, open, high, low, close, volume FROM market.candles
WHERE exchange = $1 AND symbol = ANY($2::text[]) AND timeframe = '1m' AND source = $3
  AND ts >= $4 AND ts < $5
ORDER BY symbol, ts
"""
_DEX_MINUTES = """
SELECT exchange, symbol, date_trunc('minute', ts) AS minute, sum(price * amount) / sum(amount)
FROM market.trades WHERE source = $1 AND ts >= $2 AND ts < $3
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
_CEX_SERIES = """
SELECT DISTINCT exchange, symbol FROM market.candles
WHERE timeframe = '1m' AND ts >= $1 AND ts < $2 AND source <> $3
"""
_CEX_MINUTES = """
SELECT exchange, symbol, ts, coalesce(vwap, close) FROM market.candles
WHERE exchange = $1 AND symbol = ANY($2::text[]) AND timeframe = '1m' AND ts >= $3 AND ts < $4
ORDER BY symbol, ts
"""


class KlineSource(Protocol):
    """What reconciliation needs of ``ExchangeClient``."""

    async def fetch_ohlcv_range(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int
    ) -> list[list[Any]]: ...


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def rest_bars(
    client: KlineSource, exchange: str, symbol: str, start: datetime, end: datetime
) -> pl.DataFrame:
    raw = await client.fetch_ohlcv_range(symbol, "1m", _ms(start), _ms(end))
    if not raw:
        return pl.DataFrame(schema=BAR_SCHEMA)
    frame = pl.DataFrame(
        [r[:6] for r in raw],
        orient="row",
        schema={
            "t": pl.Int64,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        },
    )
    return frame.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").cast(UTC_TS).alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )


async def _source_vs_rest(
    conn: asyncpg.Connection,
    client: KlineSource,
    *,
    source: str,
    name: str,
    rule: str,
    exchange: str,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    policy: QualityPolicy,
) -> Reconciliation:
    stored = records_frame(
        await conn.fetch(_BARS_BY_SOURCE, exchange, list(symbols), source, start, end), BAR_SCHEMA
    )
    rest = []
    for symbol in stored["symbol"].unique(maintain_order=True).to_list():
        mine = stored.filter(pl.col("symbol") == symbol)
        first, last = mine["ts"].min(), mine["ts"].max()
        assert isinstance(first, datetime) and isinstance(last, datetime)
        answer = await rest_bars(client, exchange, symbol, first, last + MINUTE)
        rest.append(answer.join(mine.select("ts"), on="ts", how="semi"))  # only these minutes
    right = pl.concat(rest) if rest else pl.DataFrame(schema=BAR_SCHEMA)
    return compare_bars(
        stored.select(list(BAR_SCHEMA)),
        right.select(list(BAR_SCHEMA)),
        name=name,
        rule=rule,
        left_label=source,
        right_label="rest",
        price_rel_tolerance=policy.price_rel_tolerance,
        volume_rel_tolerance=policy.volume_rel_tolerance,
    )


async def stream_vs_rest(
    conn: asyncpg.Connection,
    client: KlineSource,
    *,
    exchange: str,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    now: datetime,
    policy: QualityPolicy,
) -> Reconciliation:
    """Stream-built 1m bars of closed minutes against REST klines of the same minutes."""
    closed = min(end, now.replace(second=0, microsecond=0) - MINUTE)
    return await _source_vs_rest(
        conn,
        client,
        source=STREAM_SOURCE,
        name="stream_vs_rest",
        rule="reconcile.stream_rest",
        exchange=exchange,
        symbols=symbols,
        start=start,
        end=max(start, closed),
        policy=policy,
    )


async def history_vs_rest(
    conn: asyncpg.Connection,
    client: KlineSource,
    *,
    exchange: str,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    policy: QualityPolicy,
    source: str = HISTORY_SOURCE,
) -> Reconciliation:
    """Migrated 1m history against REST klines for the minutes both cover."""
    return await _source_vs_rest(
        conn,
        client,
        source=source,
        name="history_vs_rest",
        rule="reconcile.history_rest",
        exchange=exchange,
        symbols=symbols,
        start=start,
        end=end,
        policy=policy,
    )


async def latest_history_window(
    conn: asyncpg.Connection, exchange: str, symbol: str, days: int, source: str = HISTORY_SOURCE
) -> tuple[datetime, datetime] | None:
    """The last ``days`` of a symbol's migrated 1m history (None when it has none)."""
    last = await conn.fetchval(
        "SELECT max(ts) FROM market.candles WHERE exchange = $1 AND symbol = $2 "
        "AND timeframe = '1m' AND source = $3",
        exchange,
        symbol,
        source,
    )
    if last is None:
        return None
    return last + MINUTE - timedelta(days=days), last + MINUTE


async def cex_vs_dex(
    conn: asyncpg.Connection,
    *,
    start: datetime,
    end: datetime,
    policy: QualityPolicy,
    dex_source: str = DEX_SOURCE,
) -> Reconciliation:
    """DEX minute VWAPs against CEX 1m bars of the same asset (USD stablecoins as one quote)."""
    dex = records_frame(await conn.fetch(_DEX_MINUTES, dex_source, start, end), PRICE_SCHEMA)
    assets = {asset_of(s) for s in dex["symbol"].unique().to_list()}
    frames = []
    by_exchange: dict[str, list[str]] = {}
    for r in await conn.fetch(_CEX_SERIES, start, end, dex_source):
        if asset_of(r["symbol"]) in assets:
            by_exchange.setdefault(r["exchange"], []).append(r["symbol"])
    for exchange, symbols in sorted(by_exchange.items()):
        frames.append(
            records_frame(
                await conn.fetch(_CEX_MINUTES, exchange, symbols, start, end), PRICE_SCHEMA
            )
        )
    cex = pl.concat(frames) if frames else pl.DataFrame(schema=PRICE_SCHEMA)
    return compare_cex_dex(cex, dex, tolerance_bps=policy.cex_dex_tolerance_bps)
