"""The frame path's machinery, shared by every dataset: normalising the key and time columns,
the timestamp rules, applying a dataset's rules, finding repeated keys, shaping rejections."""

from __future__ import annotations

import hashlib
from typing import TypedDict

import polars as pl

from ats_pipelines.lib.validation.common import (
    REJECT_SCHEMA,
    Limits,
    ValidationResult,
    iso,
    payload_json,
)

Rule = tuple[str, pl.Expr, pl.Expr]  # (rule id, violated?, reason)


class Where(TypedDict, total=False):
    """Where a frame's rows come from: constants for absent ``exchange``/``symbol`` columns,
    how a row is named (``location`` prefix, or a ``location_col``), the timestamp column."""

    exchange: str | None
    symbol: str | None
    location: str | None
    location_col: str | None
    ts_col: str | None


_TS_NAMES = ("ts", "timestamp", "date", "datetime")
# formatted only for rows a rule caught: reasons are evaluated after the filter
ISO = pl.col("_us").cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3f+00:00")


def prepare(
    frame: pl.DataFrame, prefix: str, where: Where, timeframe: str | None = None
) -> tuple[pl.DataFrame, str, bool]:
    """The frame with ``_row``, ``_loc``, ``_us``/``_ms``/``_ts`` and key columns added; the
    timestamp column's name; whether the timestamps are timezone-aware."""
    location, location_col = where.get("location"), where.get("location_col")
    ts_col = where.get("ts_col") or next((n for n in _TS_NAMES if n in frame.columns), None)
    if ts_col is None or ts_col not in frame.columns:
        raise ValueError(f"{prefix}: no timestamp column (tried {ts_col or _TS_NAMES})")
    dtype = frame.schema[ts_col]
    ts_ok = True
    if isinstance(dtype, pl.Datetime):
        ts_ok = dtype.time_zone is not None
        as_dt = (
            pl.col(ts_col).dt.replace_time_zone("UTC")
            if not ts_ok
            else pl.col(ts_col).dt.convert_time_zone("UTC")
        )
        us = as_dt.dt.epoch("us")
    elif dtype.is_integer():
        us = pl.col(ts_col).cast(pl.Int64) * 1000
    else:
        raise ValueError(
            f"{prefix}: column {ts_col!r} has type {dtype}; expected a "
            "timezone-aware Datetime or Int64 epoch milliseconds"
        )
    if location_col is not None:
        loc = pl.col(location_col).cast(pl.String)
    else:
        named = f"{location}:row " if location else "row "
        loc = pl.lit(named) + pl.col("_row").cast(pl.String)
    constants = {
        "_ex": ("exchange", where.get("exchange")),
        "_sym": ("symbol", where.get("symbol")),
        "_tf": ("timeframe", timeframe),
    }
    work = frame.with_row_index("_row").with_columns(
        loc.alias("_loc"),
        us.alias("_us"),
        (us // 1000).alias("_ms"),
        *[
            (
                pl.col(col).cast(pl.String)
                if col in frame.columns and const is None
                else pl.lit(const, pl.String)
            ).alias(name)
            for name, (col, const) in constants.items()
        ],
    )
    work = work.with_columns(pl.col("_us").cast(pl.Datetime("us", "UTC")).alias("_ts"))
    return work, ts_col, ts_ok


def ts_rules(prefix: str, ts_ok: bool, limits: Limits) -> list[Rule]:
    loc = pl.col("_loc")
    if not ts_ok:
        return [
            (
                f"{prefix}.ts_timezone",
                pl.lit(True),
                pl.format(
                    "{}: ts {} has no time zone (naive); expected UTC",
                    loc,
                    ISO.str.strip_suffix("+00:00"),
                ),
            )
        ]
    earliest, latest = limits.earliest_ms, limits.latest_ms
    return [
        (
            f"{prefix}.ts_missing",
            pl.col("_us").is_null(),
            pl.format("{}: timestamp is missing", loc),
        ),
        (
            f"{prefix}.ts_range",
            (pl.col("_ms") < earliest).fill_null(False),
            pl.format("{}: ts {} is before {}", loc, ISO, pl.lit(iso(earliest))),
        ),
        (
            f"{prefix}.ts_future",
            (pl.col("_ms") > latest).fill_null(False),
            pl.format(
                "{}: ts {} is in the future (now + tolerance {})",
                loc,
                ISO,
                pl.lit(iso(latest)),
            ),
        ),
    ]


def run(
    frame: pl.DataFrame,
    work: pl.DataFrame,
    ts_col: str,
    ts_ok: bool,
    prefix: str,
    rules: list[Rule],
    key: list[str],
    values: list[str],
    limits: Limits,
) -> ValidationResult:
    """Apply the timestamp rules and ``rules``; split repeats of ``key`` by ``values``."""
    rules = ts_rules(prefix, ts_ok, limits) + rules
    hits = [
        work.filter(violated.fill_null(False)).select(
            pl.lit(rule).alias("rule"), reason.alias("reason"), "_row"
        )
        for rule, violated, reason in rules
    ]
    broken = pl.concat(hits)
    ok = work.join(broken.select("_row").unique(), on="_row", how="anti") if broken.height else work
    repeats, dup_rows = _repeats(ok, prefix, key, values)
    dropped = pl.concat([broken.select("_row"), repeats.select("_row")])
    accepted = (
        frame.with_row_index("_row").join(dropped, on="_row", how="anti").drop("_row")
        if dropped.height
        else frame
    )
    if isinstance(frame.schema[ts_col], pl.Datetime) and ts_ok:
        accepted = accepted.with_columns(pl.col(ts_col).dt.convert_time_zone("UTC"))
    return ValidationResult(
        accepted, _rejections(frame, work, broken), _rejections(frame, work, dup_rows)
    )


def _repeats(
    ok: pl.DataFrame, prefix: str, key: list[str], values: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows repeating an earlier row's key, and their duplicate hits (same or other values)."""
    # window functions are costly: only for the rows whose key repeats at all
    involved = ok.filter(pl.struct(key).is_duplicated())
    first = pl.col("_row").first().over(key)
    differs = pl.any_horizontal([pl.col(v).ne_missing(pl.col(v).first().over(key)) for v in values])
    involved = involved.with_columns(first.alias("_first"), differs.alias("_differs"))
    repeats = involved.filter(pl.col("_row") != pl.col("_first"))
    # one literal per branch: polars 2.1 panics formatting a when/then string column
    dup_rows = pl.concat(
        [
            repeats.filter(pl.col("_differs") == differ).select(
                pl.lit(f"{prefix}.{rule}").alias("rule"),
                pl.format(
                    "{}: repeats the key of row {}" + suffix, pl.col("_loc"), pl.col("_first")
                ).alias("reason"),
                "_row",
            )
            for differ, rule, suffix in (
                (True, "duplicate_conflict", " with different values"),
                (False, "duplicate_key", " (same values)"),
            )
        ]
    )
    return repeats, dup_rows


def _rejections(frame: pl.DataFrame, work: pl.DataFrame, hits: pl.DataFrame) -> pl.DataFrame:
    if hits.is_empty():
        return pl.DataFrame(schema=REJECT_SCHEMA)
    hits = hits.sort("_row", "rule")
    context = work.select("_row", "_loc", "_ex", "_sym", "_tf", "_ts")
    hits = hits.join(context, on="_row", how="left")
    originals = (
        frame.with_row_index("_row")
        .join(hits.select("_row").unique(), on="_row", how="semi")
        .sort("_row")
    )
    payloads = {row.pop("_row"): payload_json(row) for row in originals.to_dicts()}
    hashes = {r: hashlib.sha256(p.encode()).hexdigest() for r, p in payloads.items()}
    rows = hits["_row"].to_list()
    return hits.select(
        "rule",
        "reason",
        pl.col("_loc").alias("location"),
        pl.col("_ex").alias("exchange"),
        pl.col("_sym").alias("symbol"),
        pl.col("_tf").alias("timeframe"),
        pl.col("_ts").alias("ts"),
        pl.Series("payload", [payloads[r] for r in rows], dtype=pl.String),
        pl.Series("row_hash", [hashes[r] for r in rows], dtype=pl.String),
        pl.col("_row").cast(pl.Int64).alias("row"),
    )
