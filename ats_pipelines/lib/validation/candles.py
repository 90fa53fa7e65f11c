"""OHLCV rules: one candle message (``check_candle``) or a frame of them (``validate_frame``)."""

from __future__ import annotations

import polars as pl

from ats_pipelines.lib.timeframes import TimeframeError, floor_expr, floor_ms, parse_timeframe
from ats_pipelines.lib.validation import common, frames
from ats_pipelines.lib.validation.common import Limits, ValidationResult, Violation

RULES: dict[str, str] = {
    **{f"ohlcv.{k}": v for k, v in common.TS_RULES.items()},
    "ohlcv.ts_aligned": "the bar's open time is aligned to its timeframe",
    "ohlcv.timeframe": "the timeframe is a valid ccxt timeframe",
    "ohlcv.price_positive": "open, high, low and close are finite and positive",
    "ohlcv.high_bounds": "high >= max(open, close)",
    "ohlcv.low_bounds": "low <= min(open, close)",
    "ohlcv.high_low": "high >= low",
    "ohlcv.volume": "volume is finite and >= 0",
    "ohlcv.duplicate_key": "(exchange, symbol, timeframe, ts) repeats with the same values",
    "ohlcv.duplicate_conflict": "(exchange, symbol, timeframe, ts) repeats with other values",
}

_PRICES = ("open", "high", "low", "close")


def check_candle(
    limits: Limits,
    ts_ms: int | None,
    timeframe: str | None,
    prices: tuple[float | None, float | None, float | None, float | None],
    volume: float | None,
    *,
    location: str,
    require_volume: bool,
) -> list[Violation]:
    """The rules one candle message breaks (``prices``: open, high, low, close)."""
    out = common.check_ts("ohlcv", ts_ms, location, limits)
    tf_value = _timeframe(timeframe)
    if tf_value is None:
        out.append(
            Violation(
                "ohlcv.timeframe", f"{location}: timeframe {timeframe!r} is not a ccxt timeframe"
            )
        )
    elif ts_ms is not None and floor_ms(ts_ms, tf_value) != ts_ms:
        out.append(
            Violation(
                "ohlcv.ts_aligned",
                f"{location}: ts {common.iso(ts_ms)} is not aligned to {tf_value}",
            )
        )
    if any(common.bad_scalar(v) for v in prices):
        named = ", ".join(f"{k} {common.fmt(v)}" for k, v in zip(_PRICES, prices, strict=True))
        out.append(
            Violation(
                "ohlcv.price_positive", f"{location}: prices must be finite and positive: {named}"
            )
        )
    else:
        o, h, lo, c = prices
        assert o is not None and h is not None and lo is not None and c is not None
        out += _bounds(location, o, h, lo, c)
    if (volume is not None or require_volume) and common.bad_scalar(volume, allow_zero=True):
        out.append(
            Violation(
                "ohlcv.volume", f"{location}: volume {common.fmt(volume)} is not finite and >= 0"
            )
        )
    return out


def _timeframe(timeframe: str | None) -> str | None:
    """The canonical timeframe, or None when it is not one."""
    try:
        return parse_timeframe(timeframe).value if timeframe is not None else None
    except TimeframeError:
        return None


def _bounds(location: str, o: float, h: float, lo: float, c: float) -> list[Violation]:
    out = []
    if h < max(o, c):
        out.append(
            Violation(
                "ohlcv.high_bounds", f"{location}: high {h} is below max(open {o}, close {c})"
            )
        )
    if lo > min(o, c):
        out.append(
            Violation("ohlcv.low_bounds", f"{location}: low {lo} is above min(open {o}, close {c})")
        )
    if h < lo:
        out.append(Violation("ohlcv.high_low", f"{location}: high {h} is below low {lo}"))
    return out


def validate_frame(
    frame: pl.DataFrame,
    limits: Limits,
    where: frames.Where,
    *,
    timeframe: str | None,
    require_volume: bool,
) -> ValidationResult:
    """OHLCV rows; ``timeframe``/``exchange``/``symbol`` fill in absent columns."""
    common.require(frame, (*_PRICES, "volume"), "candles")
    work, ts_col, ts_ok = frames.prepare(frame, "ohlcv", where, timeframe)
    valid_tfs = [t for t in work["_tf"].drop_nulls().unique().to_list() if _valid_tf(t)]
    rules = _frame_rules(valid_tfs, require_volume)
    if ts_ok:  # alignment means nothing on a naive clock
        tf_valid = pl.col("_tf").is_in(valid_tfs).fill_null(False)
        rules.append(
            (
                "ohlcv.ts_aligned",
                tf_valid & pl.col("_ms").is_not_null() & ~_aligned_expr(valid_tfs),
                pl.format(
                    "{}: ts {} is not aligned to {}", pl.col("_loc"), frames.ISO, pl.col("_tf")
                ),
            )
        )
    key = ["_ex", "_sym", "_tf", "_us"]
    return frames.run(frame, work, ts_col, ts_ok, "ohlcv", rules, key, [*_PRICES, "volume"], limits)


def _frame_rules(valid_tfs: list[str], require_volume: bool) -> list[frames.Rule]:
    o, h, lo, c, v = (pl.col(n).cast(pl.Float64) for n in (*_PRICES, "volume"))
    loc = pl.col("_loc")
    prices_ok = ~pl.any_horizontal([common.bad_number(x) for x in (o, h, lo, c)])
    tf_valid = pl.col("_tf").is_in(valid_tfs).fill_null(False)
    return [
        (
            "ohlcv.timeframe",
            ~tf_valid,
            pl.format(
                "{}: timeframe {} is not a ccxt timeframe", loc, common.as_text(pl.col("_tf"))
            ),
        ),
        (
            "ohlcv.price_positive",
            ~prices_ok,
            pl.format(
                "{}: prices must be finite and positive: open {}, high {}, low {}, close {}",
                loc,
                common.as_text(o),
                common.as_text(h),
                common.as_text(lo),
                common.as_text(c),
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
            common.bad_number(v, allow_zero=True)
            & (pl.lit(require_volume) | pl.col("volume").is_not_null()),
            pl.format("{}: volume {} is not finite and >= 0", loc, common.as_text(v)),
        ),
    ]


def _valid_tf(value: str) -> bool:
    return _timeframe(value) is not None


def _aligned_expr(timeframes: list[str]) -> pl.Expr:
    """Per-row alignment of ``_us`` to ``_tf`` (one floor expression per distinct timeframe)."""
    ms = pl.col("_ms")
    exprs = [
        pl.when(pl.col("_tf") == tf).then((floor_expr(ms, tf) == ms) & (pl.col("_us") % 1000 == 0))
        for tf in timeframes
    ]
    return pl.coalesce([*exprs, pl.lit(True)]) if exprs else pl.lit(True)
