"""Market-data frames made ready for the suites: the platform's row shape (the ``market.*``
table columns) plus derived columns whose names start with ``_``.

Great Expectations compares columns with constants and with each other; what a rule needs
beyond that (a bar's offset from its timeframe grid, the step from the previous timestamp, the
best bid of a book) is computed here, vectorised in polars, once. ``_row`` numbers the input
rows so a failing expectation can name them. Candles also get a per-series frame (coverage of
the window, counting intervals the exchange confirmed empty) and the list of gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from ats_pipelines.lib.timeframes import floor_expr, parse_timeframe, timeframe_ms

TS_NAMES = ("ts", "timestamp", "date", "datetime")
SERIES = ("exchange", "symbol", "timeframe")
GAP_SCHEMA: dict[str, Any] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "timeframe": pl.String,
    "gap_start": pl.Datetime("ms", "UTC"),
    "gap_end": pl.Datetime("ms", "UTC"),
    "bars": pl.Int64,
}


@dataclass(frozen=True)
class Prepared:
    """Frames to validate by batch name (``rows``, ``series``), plus the gaps found."""

    batches: dict[str, pl.DataFrame]
    gaps: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GAP_SCHEMA))


def require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {frame.columns}")


def ts_ms_expr(frame: pl.DataFrame, what: str, ts_col: str | None = None) -> pl.Expr:
    """Epoch ms (Float64: sub-millisecond parts survive for the alignment rule)."""
    col = ts_col or next((c for c in TS_NAMES if c in frame.columns), None)
    if col is None:
        raise ValueError(f"{what}: no timestamp column (one of {TS_NAMES}); got {frame.columns}")
    dtype = frame.schema[col]
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise ValueError(f"{what}: column {col!r} is naive; timestamps must be UTC-aware")
        return (pl.col(col).dt.epoch("us") / 1000).alias("_ts_ms")
    if dtype.is_integer():
        return pl.col(col).cast(pl.Float64).alias("_ts_ms")
    raise ValueError(
        f"{what}: column {col!r} has type {dtype}; expected a UTC Datetime "
        "or Int64 epoch milliseconds"
    )


def with_constants(frame: pl.DataFrame, **values: str | None) -> pl.DataFrame:
    """Fill key columns (exchange, symbol, timeframe) from arguments where given or absent."""
    exprs = []
    for name, value in values.items():
        if value is not None:
            exprs.append(pl.lit(value, pl.String).alias(name))
        elif name not in frame.columns:
            exprs.append(pl.lit(None, pl.String).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def offset_expr(timeframe: str) -> pl.Expr:
    """Distance of ``_ts_ms`` from its timeframe grid, in ms (0 when aligned)."""
    whole = pl.col("_ts_ms").floor().cast(pl.Int64)
    return (pl.col("_ts_ms") - floor_expr(whole, timeframe).cast(pl.Float64)).alias("_ts_offset_ms")


def step_expr(keys: Iterable[str]) -> pl.Expr:
    """Time since the previous row of the same series, in delivery order (null on the first)."""
    return pl.col("_ts_ms").diff().over(list(keys)).alias("_ts_step_ms")


def _finite_positive(column: str) -> pl.Expr:
    el = pl.element()
    return pl.col(column).list.eval(el.is_finite() & (el > 0)).list.all()


# --- candles ----------------------------------------------------------------------------------


def prepare_candles(
    frame: pl.DataFrame,
    *,
    timeframe: str,
    exchange: str | None = None,
    symbol: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    confirmed_empty: pl.DataFrame | None = None,
    series: Iterable[tuple[str, str]] = (),
    ts_col: str | None = None,
) -> Prepared:
    """Candle rows of one timeframe, their coverage per (exchange, symbol), and the gaps.

    ``window`` is the half-open range whose bars are expected (default: each series' first to
    last bar); ``confirmed_empty`` holds ``exchange, symbol, ts`` of intervals the exchange
    confirmed to have no bar (``market.empty_intervals``); ``series`` names (exchange, symbol)
    pairs expected even when they have no row at all.
    """
    require(frame, ("open", "high", "low", "close", "volume"), "candles")
    tf_ms = timeframe_ms(parse_timeframe(timeframe))  # coverage needs a fixed bar length
    rows = with_constants(
        frame,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe if "timeframe" not in frame.columns else None,
    )
    rows = rows.with_row_index("_row").with_columns(ts_ms_expr(frame, "candles", ts_col))
    rows = rows.with_columns(offset_expr(timeframe), step_expr(SERIES))
    keys = ["exchange", "symbol"]
    bars = rows.filter(pl.col("_ts_offset_ms") == 0).select(
        *keys, pl.col("_ts_ms").cast(pl.Int64).alias("t")
    )
    empty = _confirmed(confirmed_empty, keys)
    spans = _spans(bars, keys, series, window, timeframe, tf_ms)
    present = _within(bars.unique(), spans, keys).group_by(keys).agg(pl.len().alias("present"))
    confirmed = (
        _within(empty.join(bars, on=[*keys, "t"], how="anti").unique(), spans, keys)
        .group_by(keys)
        .agg(pl.len().alias("confirmed_empty"))
    )
    gaps = _gaps(pl.concat([bars, empty]).unique(), spans, keys, tf_ms, timeframe)
    largest = gaps.group_by(keys).agg(
        pl.col("bars").max().alias("largest_gap_bars"), pl.len().alias("gap_runs")
    )
    table = _coverage_table(spans.join(present, on=keys, how="left"), confirmed, largest, timeframe)
    table = table.with_row_index("_row")
    return Prepared({"rows": rows, "series": table}, gaps)


def _coverage_table(
    spans: pl.DataFrame, confirmed: pl.DataFrame, largest: pl.DataFrame, timeframe: str
) -> pl.DataFrame:
    """Per series: expected, present, confirmed-empty and missing bars, coverage, the window
    and the largest gap (``spans`` carries each series' window, expected and present bars)."""
    keys = ["exchange", "symbol"]
    table = (
        spans.join(confirmed, on=keys, how="left")
        .join(largest, on=keys, how="left")
        .with_columns(
            pl.col("present", "confirmed_empty", "largest_gap_bars", "gap_runs").fill_null(0)
        )
    )
    return (
        table.with_columns(
            pl.lit(timeframe).alias("timeframe"),
            (pl.col("expected") - pl.col("present") - pl.col("confirmed_empty"))
            .clip(0)
            .alias("missing"),
            pl.when(pl.col("expected") > 0)
            .then((pl.col("present") + pl.col("confirmed_empty")) / pl.col("expected"))
            .otherwise(1.0)
            .alias("coverage"),
            pl.from_epoch("start", time_unit="ms")
            .dt.replace_time_zone("UTC")
            .alias("window_start"),
            pl.from_epoch("end", time_unit="ms").dt.replace_time_zone("UTC").alias("window_end"),
        )
        .select(
            *SERIES,
            "window_start",
            "window_end",
            "expected",
            "present",
            "confirmed_empty",
            "missing",
            "coverage",
            "largest_gap_bars",
            "gap_runs",
        )
        .sort(keys)
    )


def _confirmed(frame: pl.DataFrame | None, keys: list[str]) -> pl.DataFrame:
    schema = {"exchange": pl.String, "symbol": pl.String, "t": pl.Int64}
    if frame is None or frame.is_empty():
        return pl.DataFrame(schema=schema)
    return frame.select(
        *[pl.col(k).cast(pl.String) for k in keys],
        ts_ms_expr(frame, "confirmed_empty").cast(pl.Int64).alias("t"),
    )


def _spans(
    bars: pl.DataFrame,
    keys: list[str],
    series: Iterable[tuple[str, str]],
    window: tuple[datetime, datetime] | None,
    timeframe: str,
    tf_ms: int,
) -> pl.DataFrame:
    """Per series: the window (ms, half open) and how many bars it expects."""
    named = pl.DataFrame([list(s) for s in series], schema=keys, orient="row")
    known = pl.concat([bars.select(keys).unique(), named]).unique()
    if window is not None:
        start, end = (int(w.timestamp() * 1000) for w in window)
        spans = known.with_columns(pl.lit(start).alias("start"), pl.lit(end).alias("end"))
    else:
        spans = bars.group_by(keys).agg(
            pl.col("t").min().alias("start"), (pl.col("t").max() + tf_ms).alias("end")
        )
        spans = known.join(spans, on=keys, how="left").with_columns(
            pl.col("start").fill_null(0), pl.col("end").fill_null(0)
        )
    floor = floor_expr(pl.col("start"), timeframe)
    first = pl.when(floor == pl.col("start")).then(floor).otherwise(floor + tf_ms)  # >= start
    return spans.with_columns(
        ((pl.col("end") - first + tf_ms - 1) // tf_ms).clip(0).alias("expected"),
        first.alias("_first"),
    )


def _within(points: pl.DataFrame, spans: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return (
        points.join(spans.select(*keys, "start", "end"), on=keys)
        .filter((pl.col("t") >= pl.col("start")) & (pl.col("t") < pl.col("end")))
        .select(*keys, "t")
    )


def _gaps(
    points: pl.DataFrame, spans: pl.DataFrame, keys: list[str], tf_ms: int, timeframe: str
) -> pl.DataFrame:
    """Runs of grid points in each window with neither a bar nor a confirmed-empty answer."""
    inside = _within(points, spans, keys)
    fences = pl.concat(
        [
            spans.select(*keys, (pl.col("_first") - tf_ms).alias("t")),
            spans.select(*keys, (pl.col("_first") + pl.col("expected") * tf_ms).alias("t")),
        ]
    )
    walk = (
        pl.concat([inside, fences])
        .sort(*keys, "t")
        .with_columns(pl.col("t").shift(-1).over(keys).alias("next"))
    )
    runs = walk.filter(pl.col("next") - pl.col("t") > tf_ms).with_columns(
        ((pl.col("next") - pl.col("t")) // tf_ms - 1).alias("bars")
    )
    return runs.select(
        *keys,
        pl.lit(timeframe).alias("timeframe"),
        pl.from_epoch(pl.col("t") + tf_ms, time_unit="ms")
        .dt.replace_time_zone("UTC")
        .alias("gap_start"),
        pl.from_epoch("next", time_unit="ms").dt.replace_time_zone("UTC").alias("gap_end"),
        pl.col("bars").cast(pl.Int64),
    ).sort(*keys, "gap_start")


# --- trades, order books, aggregates ------------------------------------------------------------


def prepare_trades(
    frame: pl.DataFrame, *, exchange: str | None = None, symbol: str | None = None
) -> Prepared:
    """``market.trades`` rows: step between trades and the cost's relative error."""
    require(frame, ("trade_id", "price", "amount"), "trades")
    rows = with_constants(frame, exchange=exchange, symbol=symbol).with_row_index("_row")
    rows = rows.with_columns(ts_ms_expr(frame, "trades")).with_columns(
        step_expr(("exchange", "symbol"))
    )
    if "cost" in rows.columns:
        notional = pl.col("price") * pl.col("amount")
        rows = rows.with_columns(
            ((pl.col("cost") - notional).abs() / notional).alias("_cost_rel_err")
        )
    return Prepared({"rows": rows})


def prepare_order_books(
    frame: pl.DataFrame, *, exchange: str | None = None, symbol: str | None = None
) -> Prepared:
    """``market.order_book_snapshots`` rows: best prices, level ordering, array sanity."""
    sides = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")
    require(frame, sides, "order_books")
    el = pl.element()
    rows = with_constants(frame, exchange=exchange, symbol=symbol).with_row_index("_row")
    rows = rows.with_columns(
        ts_ms_expr(frame, "order_books"), *[pl.col(c).cast(pl.List(pl.Float64)) for c in sides]
    )
    return Prepared(
        {
            "rows": rows.with_columns(
                step_expr(("exchange", "symbol")),
                pl.col("bid_prices").list.first().alias("_best_bid"),
                pl.col("ask_prices").list.first().alias("_best_ask"),
                pl.col("bid_prices")
                .list.eval(el.diff().drop_nulls() < 0)
                .list.all()
                .alias("_bids_descending"),
                pl.col("ask_prices")
                .list.eval(el.diff().drop_nulls() > 0)
                .list.all()
                .alias("_asks_ascending"),
                (
                    (pl.col("bid_prices").list.len() == pl.col("bid_sizes").list.len())
                    & (pl.col("ask_prices").list.len() == pl.col("ask_sizes").list.len())
                ).alias("_levels_match"),
                (_finite_positive("bid_prices") & _finite_positive("ask_prices")).alias(
                    "_prices_positive"
                ),
                (_finite_positive("bid_sizes") & _finite_positive("ask_sizes")).alias(
                    "_sizes_positive"
                ),
            )
        }
    )


def prepare_bucketed(
    frame: pl.DataFrame,
    *,
    timeframe: str,
    what: str,
    exchange: str | None = None,
    symbol: str | None = None,
) -> Prepared:
    """Per-bucket aggregates (order-book 1s/1m, trade flow): the bucket's grid offset."""
    rows = with_constants(frame, exchange=exchange, symbol=symbol).with_row_index("_row")
    rows = rows.with_columns(ts_ms_expr(frame, what)).with_columns(offset_expr(timeframe))
    if "buy_volume" in rows.columns:
        rows = rows.with_columns(
            (pl.col("buy_volume") + pl.col("sell_volume") > 0).alias("_has_volume")
        )
    return Prepared({"rows": rows})
