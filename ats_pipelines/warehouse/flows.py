"""Order-book and trade history: validated writers, and their 1-second / 1-minute aggregates.

Writers put trades and order-book snapshots through the shared :class:`DataValidator` (rejects
to ``ops.quarantine`` with rule and source) and the bulk writer; snapshots get their metrics
(``lib.book``) on the way in. The aggregates are SQL over the stored rows, one symbol and time
window at a time, and rewrite only buckets whose values changed:

* ``market.order_book_1s_agg`` / ``_1m_agg`` — per bucket: snapshot count, mid open/high/low/
  close, mean and max spread, mean spread in bps, mean imbalance at depths 1/5/10, mean depth
  within ±5 % of mid on each side (both from the snapshots, so a 1m mean is not a mean of means);
* ``market.trade_flow_1m`` — per minute: taker buy and sell volume and count, and the VWAP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import polars as pl

from ats_pipelines.db.bulk import WriteResult, bulk_write
from ats_pipelines.db.quarantine import quarantine
from ats_pipelines.db.sqlid import qualified
from ats_pipelines.lib.book import book_metrics_frame
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.warehouse.rollup_sql import bucket, uses_timescaledb

BOOK_TABLES = {"1s": "market.order_book_1s_agg", "1m": "market.order_book_1m_agg"}
_BOOK_VALUES = (
    "snapshots",
    "mid_open",
    "mid_high",
    "mid_low",
    "mid_close",
    "spread_mean",
    "spread_max",
    "spread_bps_mean",
    "imbalance_1_mean",
    "imbalance_5_mean",
    "imbalance_10_mean",
    "bid_depth_5pct_mean",
    "ask_depth_5pct_mean",
)
_METRICS = (
    "mid",
    "spread",
    "spread_bps",
    "imbalance_1",
    "imbalance_5",
    "imbalance_10",
    "bid_depth_5pct",
    "ask_depth_5pct",
)
_FLOW_VALUES = ("buy_volume", "sell_volume", "buy_count", "sell_count", "vwap")


@dataclass(frozen=True)
class StoreResult:
    """A validated write: rows accepted and written, rows rejected, quarantine rows added."""

    write: WriteResult
    rejected: int
    quarantined: int


@dataclass(frozen=True)
class AggregateResult:
    """One aggregate over one window: buckets written (new / changed)."""

    table: str
    inserted: int
    updated: int


async def store_trades(
    conn: asyncpg.Connection,
    trades: pl.DataFrame,
    *,
    exchange: str,
    symbol: str,
    source: str,
    validator: DataValidator | None = None,
    batch_id: int | None = None,
) -> StoreResult:
    """Trades with ``ts`` (UTC) or ``timestamp`` (epoch ms), ``trade_id``/``id``, ``price``,
    ``amount`` and optionally ``cost``/``side`` into ``market.trades``."""
    validator = validator or DataValidator()
    checked = validator.trades(
        trades, exchange=exchange, symbol=symbol, location=f"{source} {exchange} {symbol}"
    )
    accepted = checked.accepted
    ts_col = "ts" if "ts" in accepted.columns else "timestamp"
    ts = pl.col(ts_col)
    if not isinstance(accepted.schema[ts_col], pl.Datetime):
        ts = pl.from_epoch(ts, time_unit="ms").dt.replace_time_zone("UTC")
    id_col = "trade_id" if "trade_id" in accepted.columns else "id"
    rows = accepted.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        ts.alias("ts"),
        pl.col(id_col).cast(pl.String).alias("trade_id"),
        pl.col("price").cast(pl.Float64),
        pl.col("amount").cast(pl.Float64),
        (
            pl.col("cost").cast(pl.Float64)
            if "cost" in accepted.columns
            else pl.lit(None, pl.Float64)
        ).alias("cost"),
        (pl.col("side") if "side" in accepted.columns else pl.lit(None, pl.String)).alias("side"),
        pl.lit(source).alias("source"),
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
    )
    async with conn.transaction():
        added = await quarantine(
            conn, checked.quarantinable(), dataset="trades", source=source, batch_id=batch_id
        )
        write = await bulk_write(conn, "market.trades", rows)
    return StoreResult(write, checked.rejected_rows, added)


async def store_order_books(
    conn: asyncpg.Connection,
    books: pl.DataFrame,
    *,
    exchange: str,
    symbol: str,
    source: str,
    validator: DataValidator | None = None,
    batch_id: int | None = None,
) -> StoreResult:
    """Snapshots with ``ts`` (UTC), list columns ``bid_prices``/``bid_sizes``/``ask_prices``/
    ``ask_sizes`` (best first) and optionally ``sequence`` into ``market.order_book_snapshots``;
    metrics (``lib.book``) are taken as given when every one is, else computed from the levels."""
    validator = validator or DataValidator()
    checked = validator.order_books(
        books, exchange=exchange, symbol=symbol, location=f"{source} {exchange} {symbol}"
    )
    sides = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")
    accepted = checked.accepted.with_columns(pl.col(c).cast(pl.List(pl.Float64)) for c in sides)
    if accepted.height and not set(_METRICS) <= set(accepted.columns):
        # the stream passes metrics of its whole local book; otherwise the stored top-N levels
        accepted = book_metrics_frame(accepted.drop([c for c in _METRICS if c in accepted.columns]))
    extra = [c for c in ("sequence",) if c in accepted.columns]
    metrics = [c for c in accepted.columns if c in _METRICS]
    rows = accepted.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        "ts",
        *sides,
        *[pl.col(c).cast(pl.Int64) for c in extra],
        *metrics,
        pl.lit(source).alias("source"),
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
    )
    async with conn.transaction():
        added = await quarantine(
            conn, checked.quarantinable(), dataset="order_book", source=source, batch_id=batch_id
        )
        write = await bulk_write(conn, "market.order_book_snapshots", rows)
    return StoreResult(write, checked.rejected_rows, added)


def _first_last(edition: str, value: str, ts: str) -> tuple[str, str]:
    if uses_timescaledb(edition):
        return f"first({value}, {ts})", f"last({value}, {ts})"
    return (f"(array_agg({value} ORDER BY {ts}))[1]", f"(array_agg({value} ORDER BY {ts} DESC))[1]")


def _upsert(table: str, values: tuple[str, ...], select: str) -> str:
    cols = ", ".join(values)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*values, "computed_at"))
    old = ", ".join(f"t.{c}" for c in values)
    new = ", ".join(f"EXCLUDED.{c}" for c in values)
    return (
        f"INSERT INTO {qualified(table)} AS t (exchange, symbol, ts, {cols}, computed_at) "
        f"{select} "
        f"ON CONFLICT (exchange, symbol, ts) DO UPDATE SET {sets} "
        f"WHERE ROW({old}) IS DISTINCT FROM ROW({new}) RETURNING (xmax = 0) AS inserted"
    )


def order_book_agg_sql(edition: str, timeframe: str) -> str:
    """$1 exchange, $2 symbol, $3/$4 the window: aggregate snapshots into ``timeframe`` buckets."""
    b = bucket(edition, timeframe, "ts")
    first, last = _first_last(edition, "mid", "ts")
    select = (
        f"SELECT exchange, symbol, {b}, count(*), {first}, max(mid), min(mid), {last}, "  # noqa: S608
        "avg(spread), max(spread), avg(spread_bps), avg(imbalance_1), avg(imbalance_5), "
        "avg(imbalance_10), avg(bid_depth_5pct), avg(ask_depth_5pct), now() "
        "FROM market.order_book_snapshots WHERE exchange = $1 AND symbol = $2 AND ts >= $3 "
        f"AND ts < $4 AND mid IS NOT NULL GROUP BY exchange, symbol, {b}"
    )
    return _upsert(BOOK_TABLES[timeframe], _BOOK_VALUES, select)


def trade_flow_sql(edition: str) -> str:
    """$1 exchange, $2 symbol, $3/$4 the window: taker buy/sell flow per minute."""
    b = bucket(edition, "1m", "ts")
    select = (
        f"SELECT exchange, symbol, {b}, "  # noqa: S608
        "coalesce(sum(amount::numeric) FILTER (WHERE side = 'buy'), 0)::double precision, "
        "coalesce(sum(amount::numeric) FILTER (WHERE side = 'sell'), 0)::double precision, "
        "count(*) FILTER (WHERE side = 'buy'), count(*) FILTER (WHERE side = 'sell'), "
        "(sum(coalesce(cost, price * amount)::numeric) / sum(amount::numeric))"
        "::double precision, now() "
        "FROM market.trades WHERE exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4 "
        f"GROUP BY exchange, symbol, {b}"
    )
    return _upsert("market.trade_flow_1m", _FLOW_VALUES, select)


async def _run(
    conn: asyncpg.Connection,
    table: str,
    sql: str,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
) -> AggregateResult:
    rows = await conn.fetch(sql, exchange, symbol, start, end)
    inserted = sum(1 for r in rows if r["inserted"])
    return AggregateResult(table, inserted, len(rows) - inserted)


async def aggregate_order_books(
    conn: asyncpg.Connection,
    edition: str,
    timeframe: str,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
) -> AggregateResult:
    """Roll ``[start, end)`` of one symbol's snapshots into ``timeframe`` (1s or 1m) buckets."""
    return await _run(
        conn,
        BOOK_TABLES[timeframe],
        order_book_agg_sql(edition, timeframe),
        exchange,
        symbol,
        start,
        end,
    )


async def aggregate_trade_flow(
    conn: asyncpg.Connection,
    edition: str,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
) -> AggregateResult:
    """Roll ``[start, end)`` of one symbol's trades into per-minute buy/sell flow."""
    return await _run(
        conn, "market.trade_flow_1m", trade_flow_sql(edition), exchange, symbol, start, end
    )
