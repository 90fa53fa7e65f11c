"""Features, labels and predictions made ready for their suites (see ``prepare.py``).

Features and labels are keyed by symbol (and exchange, when the frame has it) and time; the
first ``warmup_rows`` of a symbol may be null (rolling windows fill up), the last
``horizon_rows`` may lack a label (the future they look at has not happened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from ats_pipelines.quality.prepare import Prepared, offset_expr, require, ts_ms_expr

CLASSES = ("BUY", "SELL", "HOLD")


def entity_keys(frame: pl.DataFrame) -> list[str]:
    return [k for k in ("exchange", "symbol") if k in frame.columns] or ["symbol"]


def _ranked(frame: pl.DataFrame, what: str) -> tuple[pl.DataFrame, list[str]]:
    keys = entity_keys(frame)
    require(frame, keys, what)
    rows = frame.with_row_index("_row").with_columns(ts_ms_expr(frame, what))
    rows = rows.with_columns(
        pl.col("_ts_ms").rank("ordinal").over(keys).cast(pl.Int64).alias("_rank"),
        pl.len().over(keys).cast(pl.Int64).alias("_rows_in_series"),
    )
    return rows, keys


def prepare_features(
    frame: pl.DataFrame,
    *,
    warmup_rows: int | Mapping[str, int],
    candle_rows: Mapping[str, int] | None = None,
) -> Prepared:
    """Feature rows (``_after_warmup``) and, per symbol, feature rows against candle rows.

    ``warmup_rows``: leading rows of each symbol (in this frame) that may be null, one number
    for all or per symbol. ``candle_rows`` maps symbol to the number of candles the features
    were computed from (a symbol absent from it compares with 0, which fails the rule).
    """
    rows, keys = _ranked(frame, "features")
    if isinstance(warmup_rows, Mapping):
        exempt = pl.col("symbol").replace_strict(
            dict(warmup_rows), default=0, return_dtype=pl.Int64
        )
    else:
        exempt = pl.lit(warmup_rows, pl.Int64)
    rows = rows.with_columns((pl.col("_rank") > exempt).alias("_after_warmup"))
    series = rows.group_by(keys).agg(pl.len().alias("rows")).sort(keys)
    if candle_rows is not None:
        counts = pl.DataFrame(
            {"symbol": list(candle_rows), "candles": list(candle_rows.values())},
            schema={"symbol": pl.String, "candles": pl.Int64},
        )
        missing = counts.join(series, on="symbol", how="anti")
        series = pl.concat(
            [
                series,
                missing.select(
                    *[pl.lit(None, pl.String).alias(k) for k in keys if k != "symbol"],
                    "symbol",
                    pl.lit(0, pl.UInt32).alias("rows"),
                ).select(series.columns),
            ]
        )
        series = series.join(counts, on="symbol", how="left").with_columns(
            pl.col("candles").fill_null(0)
        )
        series = series.with_columns(
            pl.when(pl.col("candles") > 0)
            .then(pl.col("rows") / pl.col("candles"))
            .otherwise(None)
            .alias("row_ratio")
        )
    return Prepared({"rows": rows, "series": series.with_row_index("_row")})


def prepare_labels(
    frame: pl.DataFrame,
    *,
    label_cols: Sequence[str] = ("label",),
    classes: Sequence[str] = CLASSES,
    horizon_rows: int = 0,
) -> Prepared:
    """Label rows with one 0/1 indicator per label column and class (null when unlabelled)
    and ``_before_horizon`` (rows that must have a label)."""
    require(frame, label_cols, "labels")
    rows, _ = _ranked(frame, "labels")
    indicators = []
    for col in label_cols:
        label = pl.col(col).cast(pl.String)
        indicators += [
            pl.when(label.is_null())
            .then(None)
            .otherwise((label == c).cast(pl.Float64))
            .alias(f"_is_{col}_{c}")
            for c in classes
        ]
    return Prepared(
        {
            "rows": rows.with_columns(
                (pl.col("_rank") <= pl.col("_rows_in_series") - horizon_rows).alias(
                    "_before_horizon"
                ),
                *indicators,
            )
        }
    )


def _probas(frame: pl.DataFrame) -> pl.Expr | None:
    if "probas" not in frame.columns:
        return None
    dtype = frame.schema["probas"]
    struct = pl.Struct({c: pl.Float64 for c in CLASSES})
    if dtype == pl.String:
        return pl.col("probas").str.json_decode(struct)
    if isinstance(dtype, pl.Struct):
        return pl.col("probas")
    raise ValueError(
        f"predictions: column 'probas' has type {dtype}; expected JSON text or "
        "a struct of class probabilities"
    )


def prepare_signals(frame: pl.DataFrame) -> Prepared:
    """``signals.signals`` rows: grid offset per row's timeframe and the class probabilities."""
    require(frame, ("exchange", "symbol", "tf", "model_id", "pred", "proba"), "predictions")
    rows = frame.with_row_index("_row").with_columns(ts_ms_expr(frame, "predictions"))
    if "latency_ms" not in rows.columns:
        rows = rows.with_columns(pl.lit(None, pl.Float64).alias("latency_ms"))
    tfs = [t for t in rows["tf"].drop_nulls().unique().to_list()]
    offsets = [pl.when(pl.col("tf") == tf).then(offset_expr(tf)) for tf in tfs]
    rows = rows.with_columns(
        pl.coalesce(offsets).alias("_ts_offset_ms")
        if offsets
        else pl.lit(None, pl.Float64).alias("_ts_offset_ms")
    )
    probas = _probas(frame)
    if probas is not None:
        fields = [probas.struct.field(c) for c in CLASSES]
        of_pred = pl.coalesce(
            [pl.when(pl.col("pred") == c).then(probas.struct.field(c)) for c in CLASSES]
        )
        rows = rows.with_columns(
            pl.sum_horizontal(fields).alias("_probas_sum"),
            pl.min_horizontal(fields).alias("_probas_min"),
            pl.max_horizontal(fields).alias("_probas_max"),
            (pl.col("proba") - of_pred).abs().alias("_proba_gap"),
        )
    return Prepared({"rows": rows})
