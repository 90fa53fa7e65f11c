"""Feature computation: per bar in DuckDB SQL, over rolling windows in polars.

What a bar and its minute of order book say on their own (shape ratios, taker share, book
spread and imbalance, time of day) is SQL over the bars; what needs the bars before it
(returns, volatility, ATR, RSI, MACD, VWAP deviation, volume z-scores) is polars rolling
windows over one series at a time. Measured on 10 million minutes on this (shared, 2-core)
machine: DuckDB's window operator took 69 s for the rolling set where polars takes ~11 s, and
polars' as-of join 1.6 s where DuckDB's took 9 s, hence the split. The truncated EMAs of the
MACD are numpy convolutions (each value its own window's dot product).

Point in time: every window ends at the bar itself, so a row uses only bars that closed no
later than it did; its ``event_timestamp`` is the bar's close. A 1-minute row carries, per
higher timeframe, the latest bar whose close is at or before the row's own close (never a bar
still open then), if that bar closed within one bar length (else the columns are null).

A feature is null until its window is full. Inputs are one exchange, symbol and timeframe per
call of :func:`series_features`, sorted by ``ts``; :func:`family_features` loops over series.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import duckdb
import numpy as np
import polars as pl

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.duck import connect
from ats_pipelines.lib.timeframes import to_timedelta

SERIES = ["exchange", "symbol"]

_BAR_SQL = """
SELECT c.exchange, c.symbol, c.ts, c.ts + $bar AS event_timestamp,
       c.open, c.high, c.low, c.close, c.volume,
       coalesce(c.vwap, (c.high + c.low + c.close) / 3) * c.volume AS price_volume,
       (c.high - c.low) / c.close AS range_ratio,
       CASE WHEN c.high > c.low THEN (c.close - c.open) / (c.high - c.low) ELSE 0 END
           AS body_ratio,
       CASE WHEN c.high > c.low THEN (c.high - greatest(c.open, c.close)) / (c.high - c.low)
           ELSE 0 END AS upper_wick_ratio,
       CASE WHEN c.high > c.low THEN (least(c.open, c.close) - c.low) / (c.high - c.low)
           ELSE 0 END AS lower_wick_ratio,
       CASE WHEN c.high > c.low THEN (c.close - c.low) / (c.high - c.low) ELSE 0.5 END
           AS close_position,
       CASE WHEN c.volume > 0 THEN c.taker_buy_volume / c.volume END AS taker_buy_ratio
       {minute_columns}
FROM bars AS c
"""

# The book aggregate of minute [t, t+1m) is knowable when the 1m bar of t closes; it sits on
# the bar's row (joined by ts before this query). Time of day from epoch arithmetic: the same
# as hour()/minute() in UTC without a calendar lookup per row (1970-01-01 was a Thursday).
_MINUTE_COLUMNS = """,
       c.spread_bps_mean AS spread_bps,
       c.imbalance_1_mean AS imbalance_1,
       c.imbalance_5_mean AS imbalance_5,
       c.imbalance_10_mean AS imbalance_10,
       (c.bid_depth_5pct_mean - c.ask_depth_5pct_mean)
           / nullif(c.bid_depth_5pct_mean + c.ask_depth_5pct_mean, 0) AS depth_imbalance_5pct,
       (epoch_us(c.ts) // 60000000) % 1440 AS minute_of_day,
       (epoch_us(c.ts) // 3600000000) % 24 AS hour_of_day,
       (epoch_us(c.ts) // 86400000000 + 3) % 7 AS day_of_week,
       sin(2 * pi() * ((epoch_us(c.ts) // 60000000) % 1440) / 1440) AS tod_sin,
       cos(2 * pi() * ((epoch_us(c.ts) // 60000000) % 1440) / 1440) AS tod_cos"""

BOOK_COLUMNS = (
    "spread_bps_mean",
    "imbalance_1_mean",
    "imbalance_5_mean",
    "imbalance_10_mean",
    "bid_depth_5pct_mean",
    "ask_depth_5pct_mean",
)


def bar_rows(
    bars: pl.DataFrame,
    timeframe: str,
    book: pl.DataFrame | None = None,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """The per-bar columns of one series (DuckDB SQL, rows kept in ``ts`` order); 1-minute
    bars also get their minute's order book (``book``: the same series) and time of day."""
    minute = timeframe == cat.BASE_TIMEFRAME
    bars = bars.with_columns(pl.col("ts").dt.cast_time_unit("us"))
    if minute:
        if book is None:
            book = pl.DataFrame(
                schema={"ts": pl.Datetime("us", "UTC"), **dict.fromkeys(BOOK_COLUMNS, pl.Float64)}
            )
        book = book.select(pl.col("ts").dt.cast_time_unit("us"), *BOOK_COLUMNS)
        bars = bars.join(book, on="ts", how="left", maintain_order="left")
    own = con is None
    con = con or connect()
    try:
        con.register("bars", bars)
        sql = _BAR_SQL.format(minute_columns=_MINUTE_COLUMNS if minute else "")
        # A projection of one scan: DuckDB keeps the input order (preserve_insertion_order).
        out = con.sql(sql, params={"bar": to_timedelta(timeframe)}).pl()
    finally:
        con.unregister("bars")
        if own:
            con.close()
    return out if out["ts"].is_sorted() else out.sort("ts")


def truncated_ema(values: np.ndarray, span: int) -> np.ndarray:
    """EMA of ``values`` over the last ``EMA_SPANS_KEPT * span`` values, weights renormalised;
    NaN until the window is full. Each output is its own window's dot product (a convolution),
    so it depends on that window only, not on where the series starts."""
    length = cat.EMA_SPANS_KEPT * span
    weights = (1 - 2 / (span + 1)) ** np.arange(length)
    out = np.convolve(values, weights / weights.sum())[: len(values)]
    out[: length - 1] = np.nan
    return out


def _safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den != 0).then(num / den).otherwise(None)


def rolling_features(rows: pl.DataFrame) -> pl.DataFrame:
    """The windowed features of one series, sorted by ``ts`` (polars)."""
    c = pl.col
    close, prev = c("close"), c("close").shift(1)
    step = rows.with_columns(
        _lr=(close / prev).log(),
        _tr=pl.max_horizontal(
            c("high") - c("low"), (c("high") - prev).abs(), (c("low") - prev).abs()
        ),
        _gain=(close - prev).clip(lower_bound=0),
        _loss=(prev - close).clip(lower_bound=0),
    )
    avg_gain = c("_gain").rolling_mean(cat.RSI_WINDOW)
    avg_loss = c("_loss").rolling_mean(cat.RSI_WINDOW)
    atr = c("_tr").rolling_mean(cat.ATR_WINDOW)
    exprs = [
        *((close / close.shift(n)).log().alias(f"ret_{n}") for n in cat.RETURN_HORIZONS),
        *((c("_lr") ** 2).rolling_sum(n).sqrt().alias(f"rv_{n}") for n in cat.VOLATILITY_WINDOWS),
        atr.alias(f"atr_{cat.ATR_WINDOW}"),
        (atr / close).alias(f"natr_{cat.ATR_WINDOW}"),
        pl.when(avg_gain + avg_loss > 0)
        .then(100 * avg_gain / (avg_gain + avg_loss))
        .otherwise(pl.when(avg_gain.is_not_null()).then(50.0))
        .alias(f"rsi_{cat.RSI_WINDOW}"),
        (
            close
            / _safe_div(
                c("price_volume").rolling_sum(cat.VWAP_WINDOW),
                c("volume").rolling_sum(cat.VWAP_WINDOW),
            )
            - 1
        ).alias(f"vwap_dev_{cat.VWAP_WINDOW}"),
        *(
            _safe_div(c("volume") - c("volume").rolling_mean(n), c("volume").rolling_std(n)).alias(
                f"volume_z_{n}"
            )
            for n in cat.VOLUME_Z_WINDOWS
        ),
    ]
    if "spread_bps" in rows.columns:
        window = cat.BOOK_MEAN_WINDOW
        exprs += [
            c("spread_bps").rolling_mean(window, min_samples=1).alias(f"spread_bps_mean_{window}"),
            c("imbalance_5")
            .rolling_mean(window, min_samples=1)
            .alias(f"imbalance_5_mean_{window}"),
        ]
    out = step.with_columns(exprs)
    closes = out["close"].to_numpy()
    macd = (truncated_ema(closes, cat.MACD_FAST) - truncated_ema(closes, cat.MACD_SLOW)) / closes
    signal = np.full_like(macd, np.nan)
    first = cat.EMA_SPANS_KEPT * cat.MACD_SLOW - 1  # the MACD line's first full value
    if len(macd) > first:
        signal[first:] = truncated_ema(macd[first:], cat.MACD_SIGNAL)
    out = out.with_columns(
        pl.Series("macd", macd, nan_to_null=True),
        pl.Series("macd_signal", signal, nan_to_null=True),
    )
    out = out.with_columns(macd_hist=c("macd") - c("macd_signal"))
    return out.drop("_lr", "_tr", "_gain", "_loss")


def join_higher(minutes: pl.DataFrame, higher: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Attach, per higher timeframe, the latest closed bar's features to each 1-minute row.

    ``higher`` maps a timeframe to its feature rows (``event_timestamp`` = the bar's close).
    The bar joined to a row closing at E is the last with close <= E, if E - close < its length.
    """
    out = minutes
    for timeframe in cat.HIGHER_TIMEFRAMES:
        names = [cat.mtf_column(timeframe, f) for f in cat.MTF_FEATURES]
        frame = higher.get(timeframe)
        if frame is None or frame.is_empty():
            out = out.with_columns([pl.lit(None, pl.Float64).alias(n) for n in names])
            continue
        right = frame.select(
            *SERIES,
            pl.col("event_timestamp").alias("_closed"),
            *(pl.col(f).alias(n) for f, n in zip(cat.MTF_FEATURES, names, strict=True)),
        ).sort(*SERIES, "_closed")
        out = out.join_asof(
            right,
            left_on="event_timestamp",
            right_on="_closed",
            by=SERIES,
            strategy="backward",
            tolerance=to_timedelta(timeframe) - timedelta(microseconds=1),
            check_sortedness=False,
        ).drop("_closed")
    return out


def finalize(frame: pl.DataFrame, family: cat.Family) -> pl.DataFrame:
    """The family's columns in catalog order (no ``created_timestamp``); NaN and ±inf -> null."""
    columns = []
    for name in family.features:
        col = pl.col(name)
        if name in cat.INT_FEATURES:
            columns.append(col.cast(pl.Int64))
        else:
            columns.append(
                pl.when(col.cast(pl.Float64).is_finite())
                .then(col)
                .otherwise(None)
                .cast(pl.Float64)
                .alias(name)
            )
    return frame.select(*SERIES, "ts", "event_timestamp", *columns)


def series_features(
    bars: pl.DataFrame,
    timeframe: str,
    *,
    book: pl.DataFrame | None = None,
    higher: Mapping[str, pl.DataFrame] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Features of one series (one exchange, symbol and timeframe; bars sorted by ``ts``)."""
    family = cat.family_of(timeframe)
    rows = rolling_features(bar_rows(bars, timeframe, book, con=con))
    if timeframe == cat.BASE_TIMEFRAME:
        rows = join_higher(rows, higher or {})
    return finalize(rows, family)


def _by_series(frame: pl.DataFrame | None) -> dict[tuple[str, str], pl.DataFrame]:
    if frame is None or frame.is_empty():
        return {}
    parts = frame.partition_by(SERIES, as_dict=True, maintain_order=True)
    return {(str(k[0]), str(k[1])): v for k, v in parts.items()}


def family_features(
    bars: pl.DataFrame,
    timeframe: str,
    *,
    book: pl.DataFrame | None = None,
    higher: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Features of every series in ``bars`` (any number of exchanges and symbols)."""
    books = _by_series(book)
    highers = {tf: _by_series(f) for tf, f in (higher or {}).items()}
    con = connect()
    try:
        parts = [
            series_features(
                part.sort("ts"),
                timeframe,
                book=books.get(key),
                higher={tf: f[key] for tf, f in highers.items() if key in f},
                con=con,
            )
            for key, part in _by_series(bars).items()
        ]
    finally:
        con.close()
    if not parts:
        return pl.DataFrame(schema=empty_schema(timeframe))
    return pl.concat(parts)


def empty_schema(timeframe: str) -> dict[str, pl.DataType]:
    """Columns of :func:`finalize`'s output for a timeframe's family."""
    family = cat.family_of(timeframe)
    schema: dict[str, pl.DataType] = {
        "exchange": pl.String(),
        "symbol": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "event_timestamp": pl.Datetime("us", "UTC"),
    }
    for name in family.features:
        schema[name] = pl.Int64() if name in cat.INT_FEATURES else pl.Float64()
    return schema
