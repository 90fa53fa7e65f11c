"""One validator for every ingestion path: migration files, REST backfills and the stream.

``DataValidator`` checks a polars frame at once (``candles``, ``trades``, ``order_books``) or one
message at a time (``check_candle``, ``check_trade``, ``check_book``); both apply the same rules
with the same stable ids (``RULES``). A frame result holds the accepted rows, the rejected ones
(one row per broken rule, shaped for ``ops.quarantine``) and, separately, repeated keys.

Every rejection says where (``location``: ``file:row N``, or a message id the caller passes),
which rule (``rule``) and why, naming the values (``reason``); ``payload`` is the original row as
JSON (non-finite floats spelled ``"NaN"``/``"Infinity"``, which JSON lacks) and ``row_hash`` its
SHA-256, so re-validating the same input quarantines each bad row once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import polars as pl

from ats_pipelines.lib.timeframes import TimeframeError, floor_expr, floor_ms, parse_timeframe

RULES: dict[str, str] = {
    "ohlcv.ts_missing": "the timestamp is present",
    "ohlcv.ts_timezone": "timestamps are timezone-aware (UTC) or epoch milliseconds",
    "ohlcv.ts_range": "the timestamp is not before the configured earliest time",
    "ohlcv.ts_future": "the timestamp is not in the future (beyond the tolerance)",
    "ohlcv.ts_aligned": "the bar's open time is aligned to its timeframe",
    "ohlcv.timeframe": "the timeframe is a valid ccxt timeframe",
    "ohlcv.price_positive": "open, high, low and close are finite and positive",
    "ohlcv.high_bounds": "high >= max(open, close)",
    "ohlcv.low_bounds": "low <= min(open, close)",
    "ohlcv.high_low": "high >= low",
    "ohlcv.volume": "volume is finite and >= 0",
    "ohlcv.duplicate_key": "(exchange, symbol, timeframe, ts) repeats with the same values",
    "ohlcv.duplicate_conflict": "(exchange, symbol, timeframe, ts) repeats with other values",
    "trade.ts_missing": "the timestamp is present",
    "trade.ts_timezone": "timestamps are timezone-aware (UTC) or epoch milliseconds",
    "trade.ts_range": "the timestamp is not before the configured earliest time",
    "trade.ts_future": "the timestamp is not in the future (beyond the tolerance)",
    "trade.price_positive": "price is finite and > 0",
    "trade.amount_positive": "amount is finite and > 0",
    "trade.side": "side is 'buy', 'sell' or null",
    "trade.id_missing": "the trade id is present and not empty",
    "trade.duplicate_key": "(exchange, symbol, id) repeats with the same values",
    "trade.duplicate_conflict": "(exchange, symbol, id) repeats with other values",
    "book.ts_missing": "the timestamp is present",
    "book.ts_timezone": "timestamps are timezone-aware (UTC) or epoch milliseconds",
    "book.ts_range": "the timestamp is not before the configured earliest time",
    "book.ts_future": "the timestamp is not in the future (beyond the tolerance)",
    "book.levels_mismatch": "each side has as many sizes as prices",
    "book.price_positive": "every price is finite and > 0",
    "book.size_positive": "every size is finite and > 0",
    "book.bids_descending": "bid prices are strictly descending",
    "book.asks_ascending": "ask prices are strictly ascending",
    "book.crossed": "best bid < best ask",
    "book.duplicate_key": "(exchange, symbol, ts) repeats with the same values",
    "book.duplicate_conflict": "(exchange, symbol, ts) repeats with other values",
}

REJECT_SCHEMA: dict[str, Any] = {
    "rule": pl.String,
    "reason": pl.String,
    "location": pl.String,
    "exchange": pl.String,
    "symbol": pl.String,
    "timeframe": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "payload": pl.String,
    "row_hash": pl.String,
    "row": pl.Int64,
}
_TS_NAMES = ("ts", "timestamp", "date", "datetime")
# formatted only for rows a rule caught: reasons are evaluated after the filter
_ISO = pl.col("_us").cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3f+00:00")


class Violation(NamedTuple):
    rule: str
    reason: str


@dataclass(frozen=True)
class ValidationResult:
    """Accepted rows (input columns, ts in UTC), rejections and repeated keys."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame
    duplicates: pl.DataFrame

    @property
    def rejected_rows(self) -> int:
        """Input rows rejected (a row breaking two rules appears twice in ``rejected``)."""
        return self.rejected["row"].n_unique()

    def quarantinable(self) -> pl.DataFrame:
        """Rejections plus conflicting duplicates: what belongs in ``ops.quarantine``."""
        conflicts = self.duplicates.filter(pl.col("rule").str.ends_with("duplicate_conflict"))
        return pl.concat([self.rejected, conflicts])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def payload_json(row: dict[str, Any]) -> str:
    """Canonical JSON of one input row (keys sorted), valid for PostgreSQL jsonb."""
    return json.dumps(_jsonable(row), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _fmt(value: object) -> str:
    """A value in a reason, spelled as polars spells it in the frame path."""
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return str(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _s(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).fill_null("null")


def _bad_number(expr: pl.Expr, *, allow_zero: bool = False) -> pl.Expr:
    """Null, NaN, infinite, or not positive (``allow_zero``: negative)."""
    low = expr < 0 if allow_zero else expr <= 0
    return (expr.is_null() | expr.is_nan() | expr.is_infinite() | low).fill_null(True)


def _bad_scalar(value: float | None, *, allow_zero: bool = False) -> bool:
    if value is None or not math.isfinite(value):
        return True
    return value < 0 if allow_zero else value <= 0


class DataValidator:
    """Validation rules; ``now`` is the clock (tests pass a fixed one)."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        future_tolerance: timedelta = timedelta(seconds=5),
        earliest: datetime = datetime(2009, 1, 3, tzinfo=UTC),
    ) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self.future_tolerance = future_tolerance
        self.earliest = earliest

    def _limits_ms(self) -> tuple[int, int]:
        latest = self._now() + self.future_tolerance
        return int(self.earliest.timestamp() * 1000), int(latest.timestamp() * 1000)

    # --- per message (the stream) ----------------------------------------------------------

    def _check_ts(self, prefix: str, ts_ms: int | None, location: str) -> list[Violation]:
        if ts_ms is None:
            return [Violation(f"{prefix}.ts_missing", f"{location}: timestamp is missing")]
        earliest, latest = self._limits_ms()
        if ts_ms < earliest:
            return [
                Violation(
                    f"{prefix}.ts_range", f"{location}: ts {_iso(ts_ms)} is before {_iso(earliest)}"
                )
            ]
        if ts_ms > latest:
            return [
                Violation(
                    f"{prefix}.ts_future",
                    f"{location}: ts {_iso(ts_ms)} is in the "
                    f"future (now + tolerance {_iso(latest)})",
                )
            ]
        return []

    def check_trade(
        self,
        ts_ms: int | None,
        price: float | None,
        amount: float | None,
        side: str | None,
        trade_id: str | None,
        *,
        location: str = "message",
    ) -> list[Violation]:
        out = self._check_ts("trade", ts_ms, location)
        if _bad_scalar(price):
            out.append(
                Violation(
                    "trade.price_positive", f"{location}: price {_fmt(price)} is not finite and > 0"
                )
            )
        if _bad_scalar(amount):
            out.append(
                Violation(
                    "trade.amount_positive",
                    f"{location}: amount {_fmt(amount)} is not finite and > 0",
                )
            )
        if side is not None and side not in ("buy", "sell"):
            out.append(Violation("trade.side", f"{location}: side {side!r} is not buy/sell"))
        if trade_id is None or trade_id == "":
            out.append(Violation("trade.id_missing", f"{location}: trade id is missing"))
        return out

    def check_candle(
        self,
        ts_ms: int | None,
        timeframe: str | None,
        open_: float | None,
        high: float | None,
        low: float | None,
        close: float | None,
        volume: float | None,
        *,
        location: str = "message",
        require_volume: bool = True,
    ) -> list[Violation]:
        out = self._check_ts("ohlcv", ts_ms, location)
        try:
            tf = parse_timeframe(timeframe) if timeframe is not None else None
        except TimeframeError:
            tf = None
        if tf is None:
            out.append(
                Violation(
                    "ohlcv.timeframe",
                    f"{location}: timeframe {timeframe!r} is not a ccxt timeframe",
                )
            )
        elif ts_ms is not None and floor_ms(ts_ms, tf) != ts_ms:
            out.append(
                Violation(
                    "ohlcv.ts_aligned", f"{location}: ts {_iso(ts_ms)} is not aligned to {tf.value}"
                )
            )
        prices = (open_, high, low, close)
        if any(_bad_scalar(v) for v in prices):
            named = ", ".join(
                f"{k} {_fmt(v)}"
                for k, v in zip(("open", "high", "low", "close"), prices, strict=True)
            )
            out.append(
                Violation(
                    "ohlcv.price_positive",
                    f"{location}: prices must be finite and positive: {named}",
                )
            )
        else:
            o, h, lo, c = open_, high, low, close
            assert o is not None and h is not None and lo is not None and c is not None
            if h < max(o, c):
                out.append(
                    Violation(
                        "ohlcv.high_bounds",
                        f"{location}: high {h} is below max(open {o}, close {c})",
                    )
                )
            if lo > min(o, c):
                out.append(
                    Violation(
                        "ohlcv.low_bounds",
                        f"{location}: low {lo} is above min(open {o}, close {c})",
                    )
                )
            if h < lo:
                out.append(Violation("ohlcv.high_low", f"{location}: high {h} is below low {lo}"))
        if (volume is not None or require_volume) and _bad_scalar(volume, allow_zero=True):
            out.append(
                Violation(
                    "ohlcv.volume", f"{location}: volume {_fmt(volume)} is not finite and >= 0"
                )
            )
        return out

    def check_book(
        self,
        bids: Sequence[Sequence[float]],
        asks: Sequence[Sequence[float]],
        ts_ms: int | None = None,
        *,
        location: str = "message",
        require_ts: bool = False,
    ) -> list[Violation]:
        out = self._check_ts("book", ts_ms, location) if ts_ms is not None or require_ts else []
        for side, levels in (("bid", bids), ("ask", asks)):
            prices, sizes = [lvl[0] for lvl in levels], [lvl[1] for lvl in levels]
            out += _book_side_scalar(side, prices, sizes, location)
        if (
            bids
            and asks
            and not _bad_scalar(bids[0][0])
            and not _bad_scalar(asks[0][0])
            and bids[0][0] >= asks[0][0]
        ):
            out.append(
                Violation(
                    "book.crossed",
                    f"{location}: best bid {bids[0][0]} is not below best ask {asks[0][0]}",
                )
            )
        return out

    # --- frames ----------------------------------------------------------------------------

    def candles(
        self,
        frame: pl.DataFrame,
        *,
        timeframe: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        location: str | None = None,
        location_col: str | None = None,
        ts_col: str | None = None,
        require_volume: bool = True,
    ) -> ValidationResult:
        """OHLCV rows; ``timeframe``/``exchange``/``symbol`` fill in absent columns."""
        _require(frame, ("open", "high", "low", "close", "volume"), "candles")
        work, ts_col, ts_ok = self._prepare(
            frame,
            "ohlcv",
            ts_col,
            location,
            location_col,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
        )
        o, h, lo, c, v = (
            pl.col(n).cast(pl.Float64) for n in ("open", "high", "low", "close", "volume")
        )
        loc = pl.col("_loc")
        bad = [_bad_number(x) for x in (o, h, lo, c)]
        prices_ok = ~pl.any_horizontal(bad)
        valid_tfs = [t for t in work["_tf"].drop_nulls().unique().to_list() if _valid_tf(t)]
        tf_valid = pl.col("_tf").is_in(valid_tfs).fill_null(False)
        rules = [
            (
                "ohlcv.timeframe",
                ~tf_valid,
                pl.format("{}: timeframe {} is not a ccxt timeframe", loc, _s(pl.col("_tf"))),
            ),
            (
                "ohlcv.price_positive",
                ~prices_ok,
                pl.format(
                    "{}: prices must be finite and positive: open {}, high {}, low {}, close {}",
                    loc,
                    _s(o),
                    _s(h),
                    _s(lo),
                    _s(c),
                ),
            ),
            (
                "ohlcv.high_bounds",
                prices_ok & (h < pl.max_horizontal(o, c)),
                pl.format("{}: high {} is below max(open {}, close {})", loc, h, o, c),
            ),
            (
                "ohlcv.low_bounds",
                prices_ok & (lo > pl.min_horizontal(o, c)),
                pl.format("{}: low {} is above min(open {}, close {})", loc, lo, o, c),
            ),
            (
                "ohlcv.high_low",
                prices_ok & (h < lo),
                pl.format("{}: high {} is below low {}", loc, h, lo),
            ),
            (
                "ohlcv.volume",
                _bad_number(v, allow_zero=True)
                & (pl.lit(require_volume) | pl.col("volume").is_not_null()),
                pl.format("{}: volume {} is not finite and >= 0", loc, _s(v)),
            ),
        ]
        if ts_ok:  # alignment means nothing on a naive clock
            rules.append(
                (
                    "ohlcv.ts_aligned",
                    tf_valid & pl.col("_ms").is_not_null() & ~_aligned_expr(valid_tfs),
                    pl.format("{}: ts {} is not aligned to {}", loc, _ISO, pl.col("_tf")),
                )
            )
        values = ["open", "high", "low", "close", "volume"]
        return self._run(
            frame, work, ts_col, ts_ok, "ohlcv", rules, ["_ex", "_sym", "_tf", "_us"], values
        )

    def trades(
        self,
        frame: pl.DataFrame,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        location: str | None = None,
        location_col: str | None = None,
        ts_col: str | None = None,
        id_col: str | None = None,
    ) -> ValidationResult:
        """Trade rows (ccxt ``timestamp``/``id`` or database ``ts``/``trade_id`` names)."""
        _require(frame, ("price", "amount"), "trades")
        id_col = id_col or next((n for n in ("trade_id", "id") if n in frame.columns), None)
        if id_col is None:
            raise ValueError("trades: no trade id column (expected 'trade_id' or 'id')")
        work, ts_col, ts_ok = self._prepare(
            frame, "trade", ts_col, location, location_col, exchange=exchange, symbol=symbol
        )
        work = work.with_columns(pl.col(id_col).cast(pl.String).alias("_id"))
        price, amount, loc = (
            pl.col("price").cast(pl.Float64),
            pl.col("amount").cast(pl.Float64),
            pl.col("_loc"),
        )
        side = pl.col("side") if "side" in frame.columns else pl.lit(None, pl.String)
        rules = [
            (
                "trade.price_positive",
                _bad_number(price),
                pl.format("{}: price {} is not finite and > 0", loc, _s(price)),
            ),
            (
                "trade.amount_positive",
                _bad_number(amount),
                pl.format("{}: amount {} is not finite and > 0", loc, _s(amount)),
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
        return self._run(frame, work, ts_col, ts_ok, "trade", rules, ["_ex", "_sym", "_id"], values)

    def order_books(
        self,
        frame: pl.DataFrame,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        location: str | None = None,
        location_col: str | None = None,
        ts_col: str | None = None,
    ) -> ValidationResult:
        """Snapshots with list columns bid_prices, bid_sizes, ask_prices, ask_sizes."""
        sides = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")
        _require(frame, sides, "order_books")
        work, ts_col, ts_ok = self._prepare(
            frame, "book", ts_col, location, location_col, exchange=exchange, symbol=symbol
        )
        loc = pl.col("_loc")
        rules = []
        for side in ("bid", "ask"):
            p, s = pl.col(f"{side}_prices"), pl.col(f"{side}_sizes")
            rules.append(
                (
                    "book.levels_mismatch",
                    p.list.len() != s.list.len(),
                    pl.format(
                        "{}: {} {} prices but {} sizes",
                        loc,
                        pl.lit(side),
                        p.list.len(),
                        s.list.len(),
                    ),
                )
            )
            for what, col in (("price", p), ("size", s)):
                bad = col.list.eval(_bad_number(pl.element()))
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
                            _s(col.list.get(first, null_on_oob=True)),
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
                        _s(p.list.get(at - 1)),
                        _s(p.list.get(at)),
                    ),
                )
            )
        best_bid, best_ask = pl.col("bid_prices").list.first(), pl.col("ask_prices").list.first()
        valid_best = ~_bad_number(best_bid) & ~_bad_number(best_ask)
        rules.append(
            (
                "book.crossed",
                (valid_best & (best_bid >= best_ask)).fill_null(False),
                pl.format("{}: best bid {} is not below best ask {}", loc, best_bid, best_ask),
            )
        )
        return self._run(
            frame, work, ts_col, ts_ok, "book", rules, ["_ex", "_sym", "_us"], list(sides)
        )

    # --- shared machinery ------------------------------------------------------------------

    def _prepare(
        self,
        frame: pl.DataFrame,
        prefix: str,
        ts_col: str | None,
        location: str | None,
        location_col: str | None,
        *,
        exchange: str | None,
        symbol: str | None,
        timeframe: str | None = None,
    ) -> tuple[pl.DataFrame, str, bool]:
        ts_col = ts_col or next((n for n in _TS_NAMES if n in frame.columns), None)
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
            where = f"{location}:row " if location else "row "
            loc = pl.lit(where) + pl.col("_row").cast(pl.String)
        constants = {
            "_ex": ("exchange", exchange),
            "_sym": ("symbol", symbol),
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

    def _ts_rules(self, prefix: str, ts_ok: bool) -> list[tuple[str, pl.Expr, pl.Expr]]:
        loc = pl.col("_loc")
        if not ts_ok:
            return [
                (
                    f"{prefix}.ts_timezone",
                    pl.lit(True),
                    pl.format(
                        "{}: ts {} has no time zone (naive); expected UTC",
                        loc,
                        _ISO.str.strip_suffix("+00:00"),
                    ),
                )
            ]
        earliest, latest = self._limits_ms()
        return [
            (
                f"{prefix}.ts_missing",
                pl.col("_us").is_null(),
                pl.format("{}: timestamp is missing", loc),
            ),
            (
                f"{prefix}.ts_range",
                (pl.col("_ms") < earliest).fill_null(False),
                pl.format("{}: ts {} is before {}", loc, _ISO, pl.lit(_iso(earliest))),
            ),
            (
                f"{prefix}.ts_future",
                (pl.col("_ms") > latest).fill_null(False),
                pl.format(
                    "{}: ts {} is in the future (now + tolerance {})",
                    loc,
                    _ISO,
                    pl.lit(_iso(latest)),
                ),
            ),
        ]

    def _run(
        self,
        frame: pl.DataFrame,
        work: pl.DataFrame,
        ts_col: str,
        ts_ok: bool,
        prefix: str,
        rules: list[tuple[str, pl.Expr, pl.Expr]],
        key: list[str],
        values: list[str],
    ) -> ValidationResult:
        rules = self._ts_rules(prefix, ts_ok) + rules
        hits = [
            work.filter(violated.fill_null(False)).select(
                pl.lit(rule).alias("rule"), reason.alias("reason"), "_row"
            )
            for rule, violated, reason in rules
        ]
        broken = pl.concat(hits)
        ok = (
            work.join(broken.select("_row").unique(), on="_row", how="anti")
            if broken.height
            else work
        )
        # window functions are costly: only for the rows whose key repeats at all
        involved = ok.filter(pl.struct(key).is_duplicated())
        first = pl.col("_row").first().over(key)
        differs = pl.any_horizontal(
            [pl.col(v).ne_missing(pl.col(v).first().over(key)) for v in values]
        )
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


def _valid_tf(value: str) -> bool:
    try:
        parse_timeframe(value)
    except TimeframeError:
        return False
    return True


def _aligned_expr(timeframes: list[str]) -> pl.Expr:
    """Per-row alignment of ``_us`` to ``_tf`` (one floor expression per distinct timeframe)."""
    ms = pl.col("_ms")
    exprs = [
        pl.when(pl.col("_tf") == tf).then((floor_expr(ms, tf) == ms) & (pl.col("_us") % 1000 == 0))
        for tf in timeframes
    ]
    return pl.coalesce([*exprs, pl.lit(True)]) if exprs else pl.lit(True)


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {frame.columns}")


def _book_side_scalar(
    side: str, prices: list[float], sizes: list[float], location: str
) -> list[Violation]:
    out = []
    for what, values in (("price", prices), ("size", sizes)):
        bad = next((i for i, v in enumerate(values) if _bad_scalar(v)), None)
        if bad is not None:
            out.append(
                Violation(
                    f"book.{what}_positive",
                    f"{location}: {side} {what} at level {bad} is {_fmt(values[bad])}",
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


# --- quarantine --------------------------------------------------------------------------------

_QUARANTINE_SQL = """
WITH incoming AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::timestamptz[], $10::text[], $11::text[])
        AS r(rule, reason, location, exchange, symbol, timeframe, ts, payload, row_hash)
), inserted AS (
    INSERT INTO ops.quarantine (dataset, source, rule, reason, location, exchange, symbol,
                                timeframe, ts, payload, row_hash, batch_id)
    SELECT $1, $2, rule, reason, location, exchange, symbol, timeframe, ts, payload::jsonb,
           row_hash, $12
    FROM incoming
    ON CONFLICT (dataset, source, rule, row_hash) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


async def quarantine(
    conn: asyncpg.Connection,
    rejected: pl.DataFrame,
    *,
    dataset: str,
    source: str,
    batch_id: int | None = None,
    chunk_rows: int = 10_000,
) -> int:
    """Write rejected rows to ``ops.quarantine`` once; returns how many were new."""
    if rejected.is_empty():
        return 0
    missing = [c for c in REJECT_SCHEMA if c != "row" and c not in rejected.columns]
    if missing:
        raise ValueError(f"quarantine: rejected frame lacks column(s) {missing}")
    total = 0
    for start in range(0, rejected.height, chunk_rows):
        part = rejected.slice(start, chunk_rows)
        columns = [
            part[c].to_list()
            for c in (
                "rule",
                "reason",
                "location",
                "exchange",
                "symbol",
                "timeframe",
                "ts",
                "payload",
                "row_hash",
            )
        ]
        inserted = await conn.fetchval(_QUARANTINE_SQL, dataset, source, *columns, batch_id)
        total += int(inserted or 0)
    return total
