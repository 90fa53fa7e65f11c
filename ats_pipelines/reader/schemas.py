"""The typed frames the read API returns (polars dtypes; ``.to_arrow()`` gives Arrow)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ats_pipelines.lib import tables
from ats_pipelines.lib.tables import CANDLES, ORDER_BOOK_1M_AGG, ORDER_BOOK_SNAPSHOTS

UTC_TS = pl.Datetime("us", "UTC")

BAR_VALUES: dict[str, Any] = CANDLES.polars_schema(CANDLES.values)

# get_bars: one row per bar, ts = open time, close_time = ts + timeframe (exclusive end)
BARS: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "timeframe": pl.String,
    "ts": UTC_TS,
    "close_time": UTC_TS,
    **BAR_VALUES,
}

# get_inference_data: the bars of every context timeframe, and where they were read from
INFERENCE: dict[str, Any] = {**BARS, "source": pl.String}

BOOK_METRICS: dict[str, Any] = ORDER_BOOK_SNAPSHOTS.polars_schema(tables.BOOK_METRICS)

# get_order_book(aggregation="raw"): the latest snapshot at or before ``at``
BOOK_RAW: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "ts": UTC_TS,
    "bid_prices": pl.List(pl.Float64),
    "bid_sizes": pl.List(pl.Float64),
    "ask_prices": pl.List(pl.Float64),
    "ask_sizes": pl.List(pl.Float64),
    "sequence": pl.Int64,
    **BOOK_METRICS,
}

# get_order_book(aggregation="1s" | "1m"): the latest bucket closed by ``at``
BOOK_AGG: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "aggregation": pl.String,
    "ts": UTC_TS,
    "close_time": UTC_TS,
    **ORDER_BOOK_1M_AGG.polars_schema(ORDER_BOOK_1M_AGG.values),
    "snapshots": pl.Int64,  # widened: the frame's type since the API's first version
}

MULTI_BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def multi_timeframe_schema(timeframes: list[str]) -> dict[str, Any]:
    """``close_time`` (the row's moment) then ``{tf}_ts``, ``{tf}_open``, … per timeframe."""
    out: dict[str, Any] = {"close_time": UTC_TS}
    for tf in timeframes:
        for name in MULTI_BAR_FIELDS:
            out[f"{tf}_{name}"] = UTC_TS if name == "ts" else pl.Float64
    return out
