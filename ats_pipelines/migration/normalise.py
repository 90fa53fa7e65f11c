"""Normalisation: the column names, time encodings and types real caches have → one layout.

A :class:`ColumnPlan` is made once per file from its schema (which column is the time, which
is ``open`` …) and applied to every chunk, so all chunks agree. What had to be assumed
(epoch units, naive time zones, the funding rate living in ``open``, dropped columns) is
collected in ``assumptions`` and ends up in the ledger.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from ats_pipelines.lib.tables import CANDLES, TRADES

TS = "ts"
ROW = "_src_row"  # 0-based row number in the source file, for error locations
LOCATION = "_src_loc"  # "relative/path:row N" (1-based), where a quarantined row came from
# JSON object {column: text} of the values a row holds that could not be read as their column's
# type ('1,234.5' as a price, 'not a date' as a time), null when every value was read: the
# quarantine keeps the offending text instead of the null it would have become.
RAW = "_src_raw"

# canonical column -> accepted spellings (normalised: lower case, spaces and dashes as '_')
_TIME_ALIASES = (
    "date",
    "timestamp",
    "open_time",
    "opentime",
    "time",
    "datetime",
    "ts",
    "open_ts",
    "t",
    "__index_level_0__",
)
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "candles": {
        "open": ("open", "o", "open_price"),
        "high": ("high", "h", "high_price"),
        "low": ("low", "l", "low_price"),
        "close": ("close", "c", "close_price"),
        "volume": ("volume", "v", "vol", "base_volume", "volume_base"),
        "quote_volume": (
            "quote_volume",
            "quote_asset_volume",
            "quotevolume",
            "volume_quote",
            "qav",
        ),
        "trade_count": (
            "trade_count",
            "trades",
            "number_of_trades",
            "num_trades",
            "n_trades",
            "count",
        ),
        "vwap": ("vwap",),
        "taker_buy_volume": (
            "taker_buy_volume",
            "taker_buy_base_asset_volume",
            "taker_buy_base_volume",
            "tbbav",
        ),
    },
    "reference_candles": {
        "open": ("open", "o"),
        "high": ("high", "h"),
        "low": ("low", "l"),
        "close": ("close", "c"),
        "volume": ("volume", "v", "vol"),
    },
    "funding_rates": {
        "rate": ("rate", "funding_rate", "fundingrate", "last_funding_rate"),
        "mark_price": ("mark_price", "markprice"),
    },
    "trades": {
        "trade_id": ("trade_id", "id", "tid", "agg_trade_id"),
        "price": ("price", "p"),
        "amount": ("amount", "qty", "quantity", "size", "q", "volume"),
        "cost": ("cost", "quote_qty", "quoteqty", "quote_quantity"),
        "side": ("side",),
        "buyer_maker": ("buyer_maker", "is_buyer_maker", "isbuyermaker", "m"),
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "candles": ("open", "high", "low", "close", "volume"),
    "reference_candles": ("open", "high", "low", "close"),
    "funding_rates": ("rate",),
    "trades": ("trade_id", "price", "amount"),
}
OUTPUT: dict[str, tuple[str, ...]] = {
    "candles": CANDLES.values,
    "reference_candles": ("open", "high", "low", "close", "volume"),
    "funding_rates": ("rate", "mark_price"),
    "trades": ("trade_id", *TRADES.values),
}
_INTEGER = {"trade_count"}
_TEXT = {"trade_id", "side"}
# epoch magnitude thresholds: below 1e11 is seconds (until year 5138), then ms, µs, ns
_EPOCH_LIMITS = ((1e11, "s", 1_000_000), (1e14, "ms", 1_000), (1e17, "us", 1))


class NormaliseError(ValueError):
    """The file's columns cannot be mapped to the dataset; names the file and columns."""


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


@dataclass
class ColumnPlan:
    dataset: str
    time_column: str
    time_type: pa.DataType
    mapping: dict[str, str]  # canonical -> source column
    naive_timezone: str
    assumptions: dict[str, Any] = field(default_factory=dict)
    epoch_units: Counter[str] = field(default_factory=Counter)

    @classmethod
    def build(
        cls,
        schema: pa.Schema,
        dataset: str,
        index_columns: tuple[str, ...],
        naive_timezone: str,
        origin: str,
    ) -> ColumnPlan:
        by_norm: dict[str, str] = {}
        for name in schema.names:
            by_norm.setdefault(_norm(name), name)
        time_column = _pick_time(schema, by_norm, index_columns)
        if time_column is None:
            raise NormaliseError(
                f"{origin}: no time column (looked for {', '.join(_TIME_ALIASES)} or a "
                f"datetime index) among {schema.names}"
            )
        mapping: dict[str, str] = {}
        for canonical, aliases in _ALIASES[dataset].items():
            for alias in aliases:
                source = by_norm.get(alias)
                if source is not None and source != time_column and source not in mapping.values():
                    mapping[canonical] = source
                    break
        assumptions: dict[str, Any] = {}
        if dataset == "funding_rates" and "rate" not in mapping and "open" in by_norm:
            # freqtrade stores the funding rate in 'open' (high/low/close/volume are 0)
            mapping["rate"] = by_norm["open"]
            assumptions["funding_rate_column"] = "open (freqtrade layout)"
        missing = [c for c in REQUIRED[dataset] if c not in mapping]
        if missing:
            raise NormaliseError(
                f"{origin}: no column for {', '.join(missing)} ({dataset}); columns are "
                f"{schema.names}"
            )
        used = {time_column, *mapping.values()}
        dropped = [n for n in schema.names if n not in used]
        if dropped:
            assumptions["dropped_columns"] = dropped
        renamed = {src: dst for dst, src in mapping.items() if src != dst}
        if time_column != TS:
            renamed[time_column] = TS
        if renamed:
            assumptions["renamed_columns"] = renamed
        return cls(
            dataset,
            time_column,
            schema.field(time_column).type,
            mapping,
            naive_timezone,
            assumptions,
        )

    def apply(self, chunk: pa.Table, first_row: int) -> pl.DataFrame:
        """One chunk in the canonical layout with ``ts`` (UTC, µs) and ``_row``."""
        # contiguous columns: string functions in polars 2.1 can panic on multi-chunk ones
        frame = pl.from_arrow(chunk, rechunk=True)
        assert isinstance(frame, pl.DataFrame)
        time = self._time(frame[self.time_column])
        unread = {TS: _unread(frame[self.time_column], time)}
        columns: list[pl.Series] = [time]
        for name in OUTPUT[self.dataset]:
            if name == "side" and "side" not in self.mapping and "buyer_maker" in self.mapping:
                columns.append(_side_from_buyer_maker(frame[self.mapping["buyer_maker"]]))
                self.assumptions["side_from"] = "buyer_maker (maker buyer = taker sell)"
                continue
            source = self.mapping.get(name)
            columns.append(_convert(name, frame[source] if source else None, frame.height))
            if source is not None:
                unread[name] = _unread(frame[source], columns[-1])
        columns.append(pl.Series(ROW, range(first_row, first_row + frame.height), pl.Int64))
        columns.append(_raw_column(unread, frame.height))
        return pl.DataFrame(columns)

    def _time(self, series: pl.Series) -> pl.Series:
        dtype = series.dtype
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                self.assumptions["naive_timestamps"] = (
                    f"interpreted as {self.naive_timezone} (config naive_timezone)"
                )
                series = series.dt.replace_time_zone(self.naive_timezone)
            return series.dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(TS)
        if isinstance(dtype, pl.Date):
            self.assumptions["date_only_timestamps"] = "midnight UTC"
            return series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(TS)
        if dtype.is_numeric():
            return self._epoch(series)
        if dtype == pl.String:
            parsed = series.str.to_datetime(time_unit="us", strict=False)
            self.assumptions["string_timestamps"] = "parsed as ISO 8601"
            return self._time(parsed)
        raise NormaliseError(f"time column {self.time_column!r} has unusable type {dtype}")

    def _epoch(self, series: pl.Series) -> pl.Series:
        """Epoch numbers: the unit is decided per value by magnitude (caches mix writers)."""
        values = series.cast(pl.Float64)
        magnitude = values.abs()
        unit_expr = pl.when(magnitude < _EPOCH_LIMITS[0][0]).then(pl.lit("s"))
        for limit, unit, _ in _EPOCH_LIMITS[1:]:
            unit_expr = unit_expr.when(magnitude < limit).then(pl.lit(unit))
        unit_expr = unit_expr.otherwise(pl.lit("ns"))
        frame = pl.DataFrame({"v": series, "m": magnitude})
        counts = frame.select(unit_expr.alias("u"))["u"].drop_nulls().value_counts()
        self.epoch_units.update(
            dict(zip(counts["u"].to_list(), counts["count"].to_list(), strict=True))
        )
        self.assumptions["epoch_units"] = dict(self.epoch_units)
        if series.dtype.is_integer():
            v = pl.col("v").cast(pl.Int64)
            us = (
                pl.when(pl.col("m") < 1e11)
                .then(v * 1_000_000)
                .when(pl.col("m") < 1e14)
                .then(v * 1_000)
                .when(pl.col("m") < 1e17)
                .then(v)
                .otherwise(v // 1_000)
            )
        else:
            v = pl.col("v").cast(pl.Float64)
            us = (
                (
                    pl.when(pl.col("m") < 1e11)
                    .then(v * 1e6)
                    .when(pl.col("m") < 1e14)
                    .then(v * 1e3)
                    .when(pl.col("m") < 1e17)
                    .then(v)
                    .otherwise(v / 1e3)
                )
                .round(0)
                .cast(pl.Int64)
            )
        out = frame.select(us.alias(TS))[TS]
        return out.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _pick_time(
    schema: pa.Schema, by_norm: dict[str, str], index_columns: tuple[str, ...]
) -> str | None:
    for name in index_columns:
        if name in schema.names and pa.types.is_timestamp(schema.field(name).type):
            return name
    for alias in _TIME_ALIASES:
        if alias in by_norm:
            return by_norm[alias]
    return None


def _convert(name: str, series: pl.Series | None, height: int) -> pl.Series:
    if name in _TEXT:
        if series is None:
            return pl.Series(name, [None] * height, pl.String)
        out = series.cast(pl.String, strict=False)
        if name == "side":
            out = out.str.to_lowercase()
        return out.alias(name)
    dtype = pl.Int64 if name in _INTEGER else pl.Float64
    if series is None:
        return pl.Series(name, [None] * height, dtype)
    if series.dtype == pl.String:
        series = series.str.strip_chars().cast(pl.Float64, strict=False)
    out = series.cast(pl.Float64, strict=False)
    # NaN means "absent" in pandas-written caches; the database wants NULL for that
    out = out.fill_nan(None)
    if dtype == pl.Int64:
        out = out.cast(pl.Int64, strict=False)
    return out.alias(name)


def _unread(source: pl.Series, converted: pl.Series) -> pl.Series | None:
    """The source text where a non-empty string became null, else null (None: no such row)."""
    if source.dtype != pl.String:
        return None
    lost = source.str.strip_chars().ne("").fill_null(False) & converted.is_null()
    if not lost.any():
        return None
    return pl.select(pl.when(lost).then(source)).to_series()


def _raw_column(unread: dict[str, pl.Series | None], height: int) -> pl.Series:
    """The :data:`RAW` column: per row, the unreadable texts as a JSON object, or null."""
    found = {k: v for k, v in unread.items() if v is not None}
    if not found:
        return pl.Series(RAW, [None] * height, pl.String)
    rows: dict[int, dict[str, str]] = {}
    for name, values in found.items():
        for i, text in enumerate(values.to_list()):
            if text is not None:
                rows.setdefault(i, {})[name] = text
    texts = [json.dumps(rows[i], sort_keys=True) if i in rows else None for i in range(height)]
    return pl.Series(RAW, texts, pl.String)


def _side_from_buyer_maker(series: pl.Series) -> pl.Series:
    flag = series
    if flag.dtype == pl.String:
        flag = flag.str.to_lowercase().replace_strict(
            {"true": True, "false": False, "1": True, "0": False},
            default=None,
            return_dtype=pl.Boolean,
        )
    frame = pl.DataFrame({"f": flag.cast(pl.Boolean, strict=False)})
    side = pl.when(pl.col("f")).then(pl.lit("sell")).when(~pl.col("f")).then(pl.lit("buy"))
    return frame.select(side.otherwise(None).alias("side"))["side"]
