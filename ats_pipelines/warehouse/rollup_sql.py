"""The SQL of candle rollups, one definition for every path and edition.

A rolled bar: open of the first source bar, close of the last, high/low the extremes, and the
sums of volume, quote volume, trade count and taker-buy volume. Sums go through ``numeric``:
``float8 -> numeric`` keeps 15 significant digits, which recovers an exchange's decimal
quantities exactly, so the sum is the exact decimal sum rounded once — the number the exchange's
own higher-timeframe kline carries, whatever the order of the rows. A nullable column is null
in a rolled bar when any source bar lacks it (as in ``lib.bars.rollup``).

``sql/041_candle_rollups.timescale.sql`` spells the same select lists for the continuous
aggregates; a test runs both and compares them bar for bar.
"""

from __future__ import annotations

from ats_pipelines.lib.tables import CANDLES
from ats_pipelines.lib.timeframes import TimeframeError, parse_timeframe

CANDLE_VALUES = CANDLES.values
ROLLUP_SOURCE = "rollup"
_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_UNIT_WORDS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def interval_literal(timeframe: str) -> str:
    """``INTERVAL '5 minutes'`` for a fixed-length timeframe (weeks and months refused)."""
    tf = parse_timeframe(timeframe)
    if tf.unit not in _UNIT_WORDS:
        raise TimeframeError(f"timeframe {timeframe!r}: rollups handle s/m/h/d timeframes only")
    return f"INTERVAL '{tf.count} {_UNIT_WORDS[tf.unit]}'"


def uses_timescaledb(edition: str) -> bool:
    return edition in ("apache", "timescale")


def bucket(edition: str, timeframe: str, column: str) -> str:
    """Bucket open time of ``column``: ``time_bucket`` where TimescaleDB is, else ``date_bin``
    from the epoch (the same buckets for every timeframe dividing a day)."""
    if uses_timescaledb(edition):
        return f"time_bucket({interval_literal(timeframe)}, {column})"
    return f"date_bin({interval_literal(timeframe)}, {column}, {_EPOCH})"


def _first(edition: str, value: str, ts: str) -> str:
    if uses_timescaledb(edition):
        return f"first({value}, {ts})"
    return f"(array_agg({value} ORDER BY {ts}))[1]"


def _last(edition: str, value: str, ts: str) -> str:
    if uses_timescaledb(edition):
        return f"last({value}, {ts})"
    return f"(array_agg({value} ORDER BY {ts} DESC))[1]"


def candle_aggregates(edition: str, prefix: str = "") -> list[tuple[str, str]]:
    """``(column, aggregate expression)`` over source bars whose columns carry ``prefix``."""
    p = prefix

    def known(col: str) -> str:
        return f"count({p}{col}) = count(*)"

    def exact_sum(col: str) -> str:
        return f"sum({p}{col}::numeric)::double precision"

    last_close = _last(edition, f"{p}close", f"{p}ts")
    vwap = (
        f"CASE WHEN {known('quote_volume')} THEN CASE WHEN sum({p}volume) > 0 THEN "
        f"least(greatest({exact_sum('quote_volume')} / {exact_sum('volume')}, min({p}low)), "
        f"max({p}high)) ELSE {last_close} END END"
    )
    return [
        ("open", _first(edition, f"{p}open", f"{p}ts")),
        ("high", f"max({p}high)"),
        ("low", f"min({p}low)"),
        ("close", last_close),
        ("volume", exact_sum("volume")),
        ("quote_volume", f"CASE WHEN {known('quote_volume')} THEN {exact_sum('quote_volume')} END"),
        ("trade_count", f"CASE WHEN {known('trade_count')} THEN sum({p}trade_count)::bigint END"),
        ("vwap", vwap),
        (
            "taker_buy_volume",
            f"CASE WHEN {known('taker_buy_volume')} THEN {exact_sum('taker_buy_volume')} END",
        ),
    ]


def rollup_upsert_sql(edition: str, target: str) -> str:
    """Recompute ``target`` bars of one symbol from its source bars, for the given buckets.

    Parameters: $1 exchange, $2 symbol, $3 source timeframe, $4 target timeframe, $5 bucket open
    times (timestamptz[]), $6/$7 the source time range those buckets span (prunes chunks).
    Returns one row per bar written, ``inserted`` true for new ones; unchanged bars are not
    rewritten.
    """
    b = bucket(edition, target, "c.ts")
    aggs = ",\n           ".join(
        f"{expr} AS {name}" for name, expr in candle_aggregates(edition, "c.")
    )
    cols = ", ".join(CANDLE_VALUES)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*CANDLE_VALUES, "source"))
    old = ", ".join(f"t.{c}" for c in CANDLE_VALUES)
    new = ", ".join(f"EXCLUDED.{c}" for c in CANDLE_VALUES)
    return f"""
WITH wanted AS (SELECT DISTINCT unnest($5::timestamptz[]) AS bucket_ts),
computed AS (
    SELECT c.exchange, c.symbol, {b} AS ts,
           {aggs}
    FROM market.candles c
    JOIN wanted w ON {b} = w.bucket_ts
    WHERE c.exchange = $1 AND c.symbol = $2 AND c.timeframe = $3 AND c.ts >= $6 AND c.ts < $7
    GROUP BY c.exchange, c.symbol, {b}
)
INSERT INTO market.candles AS t (exchange, symbol, timeframe, ts, {cols}, source)
SELECT exchange, symbol, $4, ts, {cols}, '{ROLLUP_SOURCE}' FROM computed
ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET {sets}
WHERE ROW({old}) IS DISTINCT FROM ROW({new})
RETURNING (xmax = 0) AS inserted
"""  # noqa: S608 - identifiers and intervals come from code, values are parameters
