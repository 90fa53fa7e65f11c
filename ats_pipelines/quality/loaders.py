"""Reading what the suites validate from TimescaleDB into polars frames (the tables' shape).

Windows are half open ``[start, end)`` on ``ts``; every query filters on the primary key's
leading columns and ``ts``, so each reads only the chunks of its window.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import polars as pl

from ats_pipelines.lib.tables import CANDLES
from ats_pipelines.warehouse.bar_location import bars_from
from ats_pipelines.warehouse.coverage import CONFIRM_AFTER

UTC_TS = pl.Datetime("us", "UTC")
_CANDLE_COLUMNS = ("exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close")
CANDLE_SCHEMA: dict[str, Any] = CANDLES.polars_schema(
    (*_CANDLE_COLUMNS, "volume", "trade_count", "source")
)
TRADE_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "trade_id": pl.String,
    "price": pl.Float64,
    "amount": pl.Float64,
    "cost": pl.Float64,
    "side": pl.String,
    "source": pl.String,
}
BOOK_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "bid_prices": pl.List(pl.Float64),
    "bid_sizes": pl.List(pl.Float64),
    "ask_prices": pl.List(pl.Float64),
    "ask_sizes": pl.List(pl.Float64),
    "mid": pl.Float64,
    "spread": pl.Float64,
    "spread_bps": pl.Float64,
    "imbalance_1": pl.Float64,
    "imbalance_5": pl.Float64,
    "imbalance_10": pl.Float64,
    "source": pl.String,
}
BOOK_AGG_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "snapshots": pl.Int64,
    "mid_open": pl.Float64,
    "mid_high": pl.Float64,
    "mid_low": pl.Float64,
    "mid_close": pl.Float64,
    "spread_mean": pl.Float64,
    "spread_max": pl.Float64,
    "spread_bps_mean": pl.Float64,
    "imbalance_1_mean": pl.Float64,
    "imbalance_5_mean": pl.Float64,
    "imbalance_10_mean": pl.Float64,
}
FLOW_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "buy_volume": pl.Float64,
    "sell_volume": pl.Float64,
    "buy_count": pl.Int64,
    "sell_count": pl.Int64,
    "vwap": pl.Float64,
}
SIGNAL_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "tf": pl.String,
    "ts": UTC_TS,
    "model_id": pl.String,
    "pred": pl.String,
    "proba": pl.Float64,
    "probas": pl.String,
    "latency_ms": pl.Float64,
}
EMPTY_SCHEMA: dict[str, Any] = {"exchange": pl.String, "symbol": pl.String, "ts": UTC_TS}
_BOOK_AGG_TABLES = {"1s": "market.order_book_1s_agg", "1m": "market.order_book_1m_agg"}


def records_frame(records: Sequence[asyncpg.Record], schema: dict[str, Any]) -> pl.DataFrame:
    """Records (selected in ``schema``'s column order) as a typed frame."""
    if not records:
        return pl.DataFrame(schema=schema)
    columns = list(zip(*records, strict=True))
    return pl.DataFrame(
        {name: list(col) for name, col in zip(schema, columns, strict=True)}, schema=schema
    )


def _epoch_select(schema: dict[str, Any]) -> str:
    """Columns for a CSV copy: timestamps as epoch microseconds (no text parsing)."""
    return ", ".join(
        f"(extract(epoch FROM {n}) * 1000000)::bigint AS {n}" if isinstance(t, pl.Datetime) else n
        for n, t in schema.items()
    )


async def copy_frame(
    conn: asyncpg.Connection, query: str, args: Sequence[Any], schema: dict[str, Any]
) -> pl.DataFrame:
    """``query`` (selecting ``_epoch_select(schema)``) through ``COPY ... TO STDOUT`` as CSV
    into a typed frame: for tables of scalar columns, several times faster than records."""
    buffer = io.BytesIO()
    await conn.copy_from_query(query, *args, output=buffer, format="csv")
    if not buffer.getbuffer().nbytes:
        return pl.DataFrame(schema=schema)
    raw = {n: pl.Int64 if isinstance(t, pl.Datetime) else t for n, t in schema.items()}
    frame = pl.read_csv(
        buffer.getvalue(), has_header=False, new_columns=list(schema), schema_overrides=raw
    )
    return frame.with_columns(
        pl.col(n).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        for n, t in schema.items()
        if isinstance(t, pl.Datetime)
    )


def _select(schema: dict[str, Any]) -> str:
    cols = []
    for name in schema:  # column names come from the constants above, never from input
        cols.append(f"{name}::text" if name == "probas" else name)
    return ", ".join(cols)


async def load_candles(
    conn: asyncpg.Connection,
    exchange: str,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """Bars of ``timeframe`` from wherever they live (``warehouse.bar_location``)."""
    bars = await bars_from(conn, timeframe)
    sql = (
        f"SELECT {_epoch_select(CANDLE_SCHEMA)} FROM {bars} WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = ANY($2::text[]) AND ts >= $3 AND ts < $4 ORDER BY symbol, ts"
    )
    return await copy_frame(conn, sql, (exchange, list(symbols), start, end), CANDLE_SCHEMA)


async def load_confirmed_empty(
    conn: asyncpg.Connection,
    exchange: str,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    confirm_after: int = CONFIRM_AFTER,
) -> pl.DataFrame:
    """Intervals the exchange answered empty often enough to believe (not gaps)."""
    sql = (
        "SELECT exchange, symbol, ts FROM market.empty_intervals WHERE exchange = $1 "
        "AND symbol = ANY($2::text[]) AND timeframe = $3 AND ts >= $4 AND ts < $5 "
        "AND asks >= $6"
    )
    return records_frame(
        await conn.fetch(sql, exchange, list(symbols), timeframe, start, end, confirm_after),
        EMPTY_SCHEMA,
    )


async def load_trades(
    conn: asyncpg.Connection, exchange: str, symbol: str, start: datetime, end: datetime
) -> pl.DataFrame:
    sql = (
        f"SELECT {_epoch_select(TRADE_SCHEMA)} FROM market.trades WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, trade_id"
    )
    return await copy_frame(conn, sql, (exchange, symbol, start, end), TRADE_SCHEMA)


async def load_order_books(
    conn: asyncpg.Connection, exchange: str, symbol: str, start: datetime, end: datetime
) -> pl.DataFrame:
    sql = (
        f"SELECT {_select(BOOK_SCHEMA)} FROM market.order_book_snapshots WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = $2 AND ts >= $3 AND ts < $4 ORDER BY ts"
    )
    return records_frame(await conn.fetch(sql, exchange, symbol, start, end), BOOK_SCHEMA)


async def load_book_aggregates(
    conn: asyncpg.Connection,
    timeframe: str,
    exchange: str,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    table = _BOOK_AGG_TABLES[timeframe]  # a fixed table name, not input
    sql = (
        f"SELECT {_select(BOOK_AGG_SCHEMA)} FROM {table} WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = ANY($2::text[]) AND ts >= $3 AND ts < $4 ORDER BY symbol, ts"
    )
    return records_frame(
        await conn.fetch(sql, exchange, list(symbols), start, end), BOOK_AGG_SCHEMA
    )


async def load_trade_flow(
    conn: asyncpg.Connection, exchange: str, symbols: Sequence[str], start: datetime, end: datetime
) -> pl.DataFrame:
    sql = (
        f"SELECT {_select(FLOW_SCHEMA)} FROM market.trade_flow_1m WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = ANY($2::text[]) AND ts >= $3 AND ts < $4 ORDER BY symbol, ts"
    )
    return records_frame(await conn.fetch(sql, exchange, list(symbols), start, end), FLOW_SCHEMA)


async def load_signals(
    conn: asyncpg.Connection, start: datetime, end: datetime, model_id: str | None = None
) -> pl.DataFrame:
    sql = (
        f"SELECT {_select(SIGNAL_SCHEMA)} FROM signals.signals WHERE ts >= $1 AND ts < $2 "  # noqa: S608 - constants
        "AND ($3::text IS NULL OR model_id = $3) ORDER BY model_id, exchange, symbol, tf, ts"
    )
    return records_frame(await conn.fetch(sql, start, end, model_id), SIGNAL_SCHEMA)


async def load_recent_signals(conn: asyncpg.Connection, since: datetime) -> pl.DataFrame:
    """Predictions written since ``since`` (what the latest predictions runs produced)."""
    sql = (
        f"SELECT {_select(SIGNAL_SCHEMA)} FROM signals.signals WHERE created_at >= $1 "  # noqa: S608 - constants
        "ORDER BY model_id, exchange, symbol, tf, ts"
    )
    return records_frame(await conn.fetch(sql, since), SIGNAL_SCHEMA)


async def candle_counts(
    conn: asyncpg.Connection,
    exchange: str,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> dict[str, int]:
    bars = await bars_from(conn, timeframe)
    rows = await conn.fetch(
        f"SELECT symbol, count(*) AS n FROM {bars} WHERE exchange = $1 "  # noqa: S608 - constants
        "AND symbol = ANY($2::text[]) AND ts >= $3 AND ts < $4 GROUP BY symbol",
        exchange,
        list(symbols),
        start,
        end,
    )
    found = {r["symbol"]: int(r["n"]) for r in rows}
    return {s: found.get(s, 0) for s in symbols}


async def bars_before(
    conn: asyncpg.Connection,
    exchange: str,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    limit: int,
) -> dict[str, int]:
    """How many bars (up to ``limit``) each series has before ``start`` (an index scan)."""
    out = {}
    bars = await bars_from(conn, timeframe)
    for symbol in symbols:
        n = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM {bars} WHERE exchange = $1 "  # noqa: S608 - constants
            "AND symbol = $2 AND ts < $3 ORDER BY ts DESC LIMIT $4) n",
            exchange,
            symbol,
            start,
            limit,
        )
        out[symbol] = int(n or 0)
    return out


async def candle_series(
    conn: asyncpg.Connection, timeframe: str, start: datetime, end: datetime
) -> list[tuple[str, str]]:
    """(exchange, symbol) pairs with candles of ``timeframe`` in the window."""
    bars = await bars_from(conn, timeframe)
    rows = await conn.fetch(
        f"SELECT DISTINCT exchange, symbol FROM {bars} "  # noqa: S608 - constants
        "WHERE ts >= $1 AND ts < $2 ORDER BY 1, 2",
        start,
        end,
    )
    return [(r["exchange"], r["symbol"]) for r in rows]
