"""Adapter between the migration and the shared validator (``ats_pipelines.lib.validation``).

TEMPORARY FALLBACK — clearly not a validator of its own: until ``lib/validation.py`` lands,
:func:`_fallback_split` rejects only what the database's CHECK constraints would refuse
(nulls, non-positive prices, high < low …), so one bad row is quarantined instead of failing
a whole file's COPY. Replace by the shared ``DataValidator`` as soon as it exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import asyncpg
import polars as pl

from ats_pipelines.migration.normalise import ROW, TS

REJECT_COLUMNS = ("rule", "reason")


@dataclass(frozen=True)
class Split:
    accepted: pl.DataFrame
    rejected: pl.DataFrame  # the rejected rows plus ``rule`` and ``reason``


def _rules(dataset: str) -> list[tuple[str, str, pl.Expr]]:
    """(rule, reason, expression that is True for a BAD row)."""
    ts_null = ("ts_missing", "timestamp missing or unparseable", pl.col(TS).is_null())
    if dataset == "trades":
        return [
            ts_null,
            (
                "trade_id_missing",
                "trade id missing or empty",
                pl.col("trade_id").is_null() | (pl.col("trade_id") == ""),
            ),
            (
                "price_not_positive",
                "price missing or <= 0",
                ~(pl.col("price") > 0).fill_null(False),
            ),
            (
                "amount_not_positive",
                "amount missing or <= 0",
                ~(pl.col("amount") > 0).fill_null(False),
            ),
            (
                "side_invalid",
                "side not buy/sell",
                pl.col("side").is_not_null() & ~pl.col("side").is_in(["buy", "sell"]),
            ),
        ]
    if dataset == "funding_rates":
        return [
            ts_null,
            (
                "rate_out_of_range",
                "funding rate missing or outside (-1, 1)",
                ~((pl.col("rate") > -1) & (pl.col("rate") < 1)).fill_null(False),
            ),
        ]
    ohlc = [pl.col(c) for c in ("open", "high", "low", "close")]
    rules = [
        ts_null,
        (
            "ohlc_missing",
            "open/high/low/close missing",
            pl.any_horizontal(c.is_null() for c in ohlc),
        ),
        ("high_below_low", "high < low", (pl.col("high") < pl.col("low")).fill_null(False)),
    ]
    if dataset == "candles":
        rules += [
            (
                "price_not_positive",
                "a price is <= 0",
                pl.any_horizontal(c <= 0 for c in ohlc).fill_null(False),
            ),
            (
                "high_not_max",
                "high below open or close",
                ((pl.col("high") < pl.col("open")) | (pl.col("high") < pl.col("close"))).fill_null(
                    False
                ),
            ),
            (
                "low_not_min",
                "low above open or close",
                ((pl.col("low") > pl.col("open")) | (pl.col("low") > pl.col("close"))).fill_null(
                    False
                ),
            ),
            (
                "volume_invalid",
                "volume missing or negative",
                ~(pl.col("volume") >= 0).fill_null(False),
            ),
        ]
    return rules


def _fallback_split(frame: pl.DataFrame, dataset: str) -> Split:
    rules = _rules(dataset)
    rule_expr = pl.lit(None, pl.String)
    reason_expr = pl.lit(None, pl.String)
    for rule, reason, bad in reversed(rules):  # first matching rule wins
        rule_expr = pl.when(bad).then(pl.lit(rule)).otherwise(rule_expr)
        reason_expr = pl.when(bad).then(pl.lit(reason)).otherwise(reason_expr)
    tagged = frame.with_columns(rule_expr.alias("rule"), reason_expr.alias("reason"))
    bad_mask = tagged["rule"].is_not_null()
    return Split(frame.filter(~bad_mask), tagged.filter(bad_mask))


def split(frame: pl.DataFrame, dataset: str) -> Split:
    """Accepted and rejected rows of one normalised chunk."""
    return _fallback_split(frame, dataset)


async def quarantine(
    conn: asyncpg.Connection,
    rejected: pl.DataFrame,
    *,
    dataset: str,
    source: str,
    location: str,
    exchange: str,
    symbol: str,
    timeframe: str | None,
    batch_id: int | None,
) -> int:
    """Rejected rows into ``ops.quarantine`` (once per row: row_hash includes the location)."""
    if rejected.is_empty():
        return 0
    records = []
    for row in rejected.iter_rows(named=True):
        where = f"{location}:row {row[ROW] + 1}"
        payload = {k: _jsonable(v) for k, v in row.items() if k not in (*REJECT_COLUMNS, ROW)}
        text = json.dumps(payload, sort_keys=True)
        row_hash = hashlib.sha256(f"{where}|{text}".encode()).hexdigest()
        records.append(
            (
                dataset,
                source,
                row["rule"],
                row["reason"],
                where,
                exchange,
                symbol,
                timeframe,
                row[TS],
                text,
                row_hash,
                batch_id,
            )
        )
    await conn.executemany(
        "INSERT INTO ops.quarantine (dataset, source, rule, reason, location, exchange, symbol, "
        "timeframe, ts, payload, row_hash, batch_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12) "
        "ON CONFLICT (dataset, source, rule, row_hash) DO NOTHING",
        records,
    )
    return len(records)


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value else "NaN"
    return str(value)
