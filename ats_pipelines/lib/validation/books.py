"""Order-book rules: one snapshot message (``check_book``) or a frame of snapshots with list
columns bid_prices, bid_sizes, ask_prices, ask_sizes (``validate_frame``)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ats_pipelines.lib.validation import common, frames
from ats_pipelines.lib.validation.common import Limits, ValidationResult, Violation

RULES: dict[str, str] = {
    **{f"book.{k}": v for k, v in common.TS_RULES.items()},
    "book.levels_mismatch": "each side has as many sizes as prices",
    "book.price_positive": "every price is finite and > 0",
    "book.size_positive": "every size is finite and > 0",
    "book.bids_descending": "bid prices are strictly descending",
    "book.asks_ascending": "ask prices are strictly ascending",
    "book.crossed": "best bid < best ask",
    "book.duplicate_key": "(exchange, symbol, ts) repeats with the same values",
    "book.duplicate_conflict": "(exchange, symbol, ts) repeats with other values",
}

_SIDES = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")


def check_book(
    limits: Limits,
    bids: Sequence[Sequence[float]],
    asks: Sequence[Sequence[float]],
    ts_ms: int | None,
    *,
    location: str,
    require_ts: bool,
) -> list[Violation]:
    """The rules one snapshot breaks (its time only when given or required)."""
    out = (
        common.check_ts("book", ts_ms, location, limits) if ts_ms is not None or require_ts else []
    )
    for side, levels in (("bid", bids), ("ask", asks)):
        prices, sizes = [lvl[0] for lvl in levels], [lvl[1] for lvl in levels]
        out += _side_scalar(side, prices, sizes, location)
    if (
        bids
        and asks
        and not common.bad_scalar(bids[0][0])
        and not common.bad_scalar(asks[0][0])
        and bids[0][0] >= asks[0][0]
    ):
        out.append(
            Violation(
                "book.crossed",
                f"{location}: best bid {bids[0][0]} is not below best ask {asks[0][0]}",
            )
        )
    return out


def _side_scalar(
    side: str, prices: list[float], sizes: list[float], location: str
) -> list[Violation]:
    out = []
    for what, values in (("price", prices), ("size", sizes)):
        bad = next((i for i, v in enumerate(values) if common.bad_scalar(v)), None)
        if bad is not None:
            out.append(
                Violation(
                    f"book.{what}_positive",
                    f"{location}: {side} {what} at level {bad} is {common.fmt(values[bad])}",
                )
            )
    order = "descending" if side == "bid" else "ascending"
    for i in range(1, len(prices)):
        if (prices[i] >= prices[i - 1]) if side == "bid" else (prices[i] <= prices[i - 1]):
            out.append(
                Violation(
                    f"book.{side}s_{order}",
                    f"{location}: {side} prices not "
                    f"strictly {order} at level {i} ({prices[i - 1]} then "
                    f"{prices[i]})",
                )
            )
            break
    return out


def validate_frame(
    frame: pl.DataFrame,
    limits: Limits,
    where: frames.Where,
) -> ValidationResult:
    """Snapshots with list columns bid_prices, bid_sizes, ask_prices, ask_sizes."""
    common.require(frame, _SIDES, "order_books")
    work, ts_col, ts_ok = frames.prepare(frame, "book", where)
    rules = _side_rules("bid") + _side_rules("ask")
    best_bid, best_ask = pl.col("bid_prices").list.first(), pl.col("ask_prices").list.first()
    valid_best = ~common.bad_number(best_bid) & ~common.bad_number(best_ask)
    rules.append(
        (
            "book.crossed",
            (valid_best & (best_bid >= best_ask)).fill_null(False),
            pl.format(
                "{}: best bid {} is not below best ask {}", pl.col("_loc"), best_bid, best_ask
            ),
        )
    )
    key = ["_ex", "_sym", "_us"]
    return frames.run(frame, work, ts_col, ts_ok, "book", rules, key, list(_SIDES), limits)


def _side_rules(side: str) -> list[frames.Rule]:
    loc = pl.col("_loc")
    p, s = pl.col(f"{side}_prices"), pl.col(f"{side}_sizes")
    rules: list[frames.Rule] = [
        (
            "book.levels_mismatch",
            p.list.len() != s.list.len(),
            pl.format(
                "{}: {} {} prices but {} sizes", loc, pl.lit(side), p.list.len(), s.list.len()
            ),
        )
    ]
    for what, col in (("price", p), ("size", s)):
        bad = col.list.eval(common.bad_number(pl.element()))
        first = bad.list.arg_max()
        rules.append(
            (
                f"book.{what}_positive",
                bad.list.any().fill_null(True),
                pl.format(
                    "{}: {} {} at level {} is {}",
                    loc,
                    pl.lit(side),
                    pl.lit(what),
                    first,
                    common.as_text(col.list.get(first, null_on_oob=True)),
                ),
            )
        )
    step = p.list.eval(pl.element().diff().drop_nulls())
    wrong = step.list.eval(pl.element() >= 0 if side == "bid" else pl.element() <= 0)
    at = wrong.list.arg_max() + 1
    order = "descending" if side == "bid" else "ascending"
    rules.append(
        (
            f"book.{side}s_{order}",
            wrong.list.any().fill_null(False),
            pl.format(
                "{}: {} prices not strictly {} at level {} ({} then {})",
                loc,
                pl.lit(side),
                pl.lit(order),
                at,
                common.as_text(p.list.get(at - 1)),
                common.as_text(p.list.get(at)),
            ),
        )
    )
    return rules
