"""Trade rules: one trade message (``check_trade``) or a frame of them (``validate_frame``)."""

from __future__ import annotations

import polars as pl

from ats_pipelines.lib.validation import common, frames
from ats_pipelines.lib.validation.common import Limits, ValidationResult, Violation

RULES: dict[str, str] = {
    **{f"trade.{k}": v for k, v in common.TS_RULES.items()},
    "trade.price_positive": "price is finite and > 0",
    "trade.amount_positive": "amount is finite and > 0",
    "trade.side": "side is 'buy', 'sell' or null",
    "trade.id_missing": "the trade id is present and not empty",
    "trade.duplicate_key": "(exchange, symbol, id) repeats with the same values",
    "trade.duplicate_conflict": "(exchange, symbol, id) repeats with other values",
}


def check_trade(
    limits: Limits,
    ts_ms: int | None,
    price: float | None,
    amount: float | None,
    side: str | None,
    trade_id: str | None,
    *,
    location: str,
) -> list[Violation]:
    """The rules one trade message breaks."""
    out = common.check_ts("trade", ts_ms, location, limits)
    if common.bad_scalar(price):
        out.append(
            Violation(
                "trade.price_positive",
                f"{location}: price {common.fmt(price)} is not finite and > 0",
            )
        )
    if common.bad_scalar(amount):
        out.append(
            Violation(
                "trade.amount_positive",
                f"{location}: amount {common.fmt(amount)} is not finite and > 0",
            )
        )
    if side is not None and side not in ("buy", "sell"):
        out.append(Violation("trade.side", f"{location}: side {side!r} is not buy/sell"))
    if trade_id is None or trade_id == "":
        out.append(Violation("trade.id_missing", f"{location}: trade id is missing"))
    return out


def validate_frame(
    frame: pl.DataFrame,
    limits: Limits,
    where: frames.Where,
    *,
    id_col: str | None,
) -> ValidationResult:
    """Trade rows (ccxt ``timestamp``/``id`` or database ``ts``/``trade_id`` names)."""
    common.require(frame, ("price", "amount"), "trades")
    id_col = id_col or next((n for n in ("trade_id", "id") if n in frame.columns), None)
    if id_col is None:
        raise ValueError("trades: no trade id column (expected 'trade_id' or 'id')")
    work, ts_col, ts_ok = frames.prepare(frame, "trade", where)
    work = work.with_columns(pl.col(id_col).cast(pl.String).alias("_id"))
    price, amount, loc = (
        pl.col("price").cast(pl.Float64),
        pl.col("amount").cast(pl.Float64),
        pl.col("_loc"),
    )
    side = pl.col("side") if "side" in frame.columns else pl.lit(None, pl.String)
    rules: list[frames.Rule] = [
        (
            "trade.price_positive",
            common.bad_number(price),
            pl.format("{}: price {} is not finite and > 0", loc, common.as_text(price)),
        ),
        (
            "trade.amount_positive",
            common.bad_number(amount),
            pl.format("{}: amount {} is not finite and > 0", loc, common.as_text(amount)),
        ),
        (
            "trade.side",
            side.is_not_null() & ~side.is_in(["buy", "sell"]),
            pl.format("{}: side '{}' is not buy/sell", loc, side),
        ),
        (
            "trade.id_missing",
            pl.col("_id").is_null() | (pl.col("_id") == ""),
            pl.format("{}: trade id is missing", loc),
        ),
    ]
    values = [n for n in ("price", "amount", "side", "cost") if n in frame.columns] + ["_ms"]
    key = ["_ex", "_sym", "_id"]
    return frames.run(frame, work, ts_col, ts_ok, "trade", rules, key, values, limits)
