"""Where bars of a timeframe are read from: one answer for every reader and every edition.

Stored timeframes are ``1m`` and the rollup levels (``5m 15m 1h 4h 1d``). Their bars come from
two kinds of writer: *native* bars (the stream's own higher-timeframe bars, legacy files, the
exchange's klines) and *rolled-up* bars computed from the 1-minute bars. The model, the same on
plain PostgreSQL, TimescaleDB Apache and TimescaleDB Community:

* a bar of a stored timeframe is the rolled-up bar where 1-minute bars exist for its bucket, else
  the native bar — **the rollup is authoritative** when both exist (it is recomputed whenever a
  minute changes; a native bar is only as good as its writer's view at close time);
* on the incremental path (no continuous aggregates) both kinds share ``market.candles`` (the
  rollup's upsert overwrites a native bar of the same key), so the relation is that table;
* under the ``timescale`` licence rolled-up bars live in the continuous aggregates
  ``market.candles_<tf>`` and native ones in ``market.candles``: the relation is the aggregate
  plus the native bars whose bucket the aggregate does not hold;
* any other fixed-length timeframe (``30m``, ``2h``, ``12h``, ``1w`` …) is computed on demand
  from the largest stored timeframe that divides it, with the rollup's own aggregate
  expressions, keeping only buckets whose interval is over (a rollup never shows an open bar);
  weeks start on Monday as in :mod:`ats_pipelines.lib.timeframes`;
* calendar months and sub-minute timeframes are refused in one line naming what is served.

Every relation exposes the same columns (:data:`BAR_COLUMNS`), already restricted to the
timeframe, so a reader only adds ``WHERE exchange = … AND symbol = … AND ts …``.
"""

from __future__ import annotations

import asyncpg

from ats_pipelines.lib.tables import CANDLES
from ats_pipelines.lib.timeframes import TimeframeError, divides, parse_timeframe
from ats_pipelines.warehouse.config import ROLLUP_TIMEFRAMES
from ats_pipelines.warehouse.rollup_sql import candle_aggregates
from ats_pipelines.warehouse.rollups import BASE, CONTINUOUS, rollup_mode

STORED_TIMEFRAMES: tuple[str, ...] = (BASE, *ROLLUP_TIMEFRAMES)
CANDLE_VALUES = CANDLES.values
BAR_COLUMNS: tuple[str, ...] = ("exchange", "symbol", "timeframe", "ts", *CANDLE_VALUES, "source")
COMPUTED_SOURCE = "computed"
_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_MONDAY = "TIMESTAMPTZ '1970-01-05 00:00:00+00'"  # the first Monday after the epoch
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def served_line() -> str:
    stored = ", ".join(STORED_TIMEFRAMES)
    return f"stored: {stored}; any other whole number of minutes, hours, days or weeks is computed"


def check_timeframe(timeframe: str) -> str:
    """The canonical spelling of a servable timeframe, or one line saying what is served."""
    try:
        tf = parse_timeframe(timeframe)
    except TimeframeError as exc:
        raise TimeframeError(f"{exc} ({served_line()})") from None
    if tf.unit not in _SECONDS:
        raise TimeframeError(f"timeframe {timeframe!r} is not served ({served_line()})")
    return tf.value


def _literal(timeframe: str) -> str:
    return f"'{check_timeframe(timeframe)}'::text"  # validated: [1-9][0-9]*[mhdw]


def _stored_columns(prefix: str) -> str:
    return ", ".join(f"{prefix}{c}" for c in BAR_COLUMNS)


def _table_bars(timeframe: str) -> str:
    return (
        f"SELECT {_stored_columns('c.')} FROM market.candles c "  # noqa: S608 - validated
        f"WHERE c.timeframe = {_literal(timeframe)}"
    )


def _aggregate_bars(timeframe: str) -> str:
    """The continuous aggregate, plus native bars of buckets it does not hold."""
    view = f"market.candles_{check_timeframe(timeframe)}"
    values = ", ".join(f"a.{c}" for c in CANDLE_VALUES)
    return (
        f"SELECT a.exchange, a.symbol, {_literal(timeframe)} AS timeframe, a.ts, {values}, "  # noqa: S608
        f"'rollup'::text AS source FROM {view} a "
        f"UNION ALL {_table_bars(timeframe)} AND NOT EXISTS (SELECT 1 FROM {view} x "
        "WHERE x.exchange = c.exchange AND x.symbol = c.symbol AND x.ts = c.ts)"
    )


def computed_from(timeframe: str) -> str:
    """The largest stored timeframe whose buckets nest in ``timeframe``'s."""
    tf = check_timeframe(timeframe)
    for lower in reversed(STORED_TIMEFRAMES):
        if divides(lower, tf):
            return lower
    raise TimeframeError(f"timeframe {timeframe!r} is not served ({served_line()})")


def _bucket(timeframe: str, column: str) -> str:
    tf = parse_timeframe(timeframe)
    origin = _MONDAY if tf.unit == "w" else _EPOCH
    seconds = tf.count * _SECONDS[tf.unit]
    return f"date_bin(INTERVAL '{seconds} seconds', {column}, {origin})"


def _computed_bars(timeframe: str, mode: str) -> str:
    tf = check_timeframe(timeframe)
    lower = computed_from(tf)
    seconds = parse_timeframe(tf).count * _SECONDS[parse_timeframe(tf).unit]
    b = _bucket(tf, "s.ts")
    # the array_agg spelling of first/last: the same numbers on every edition
    aggs = ", ".join(f"{expr} AS {name}" for name, expr in candle_aggregates("postgresql", "s."))
    return (
        f"SELECT s.exchange, s.symbol, {_literal(tf)} AS timeframe, {b} AS ts, {aggs}, "  # noqa: S608
        f"'{COMPUTED_SOURCE}'::text AS source FROM {bars_relation(lower, mode, 's')} "
        f"GROUP BY s.exchange, s.symbol, {b} "
        f"HAVING {b} + INTERVAL '{seconds} seconds' <= now()"
    )


def table_backed(timeframe: str, mode: str) -> bool:
    """True when the bars are exactly the rows of ``market.candles`` of that timeframe."""
    tf = check_timeframe(timeframe)
    return tf == BASE or (tf in STORED_TIMEFRAMES and mode != CONTINUOUS)


def bars_relation(timeframe: str, mode: str, alias: str = "b") -> str:
    """``(SELECT …) AS alias``: the bars of ``timeframe`` on the rollup path ``mode``, with the
    columns :data:`BAR_COLUMNS`. Raises :class:`TimeframeError` for a timeframe not served."""
    tf = check_timeframe(timeframe)
    if table_backed(tf, mode):
        body = _table_bars(tf)
    elif tf in STORED_TIMEFRAMES:
        body = _aggregate_bars(tf)
    else:
        body = _computed_bars(tf, mode)
    return f"({body}) AS {alias}"


async def bars_from(conn: asyncpg.Connection, timeframe: str, alias: str = "b") -> str:
    """:func:`bars_relation` on the server's active rollup path."""
    return bars_relation(timeframe, await rollup_mode(conn), alias)
