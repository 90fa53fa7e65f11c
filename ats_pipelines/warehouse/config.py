"""Settings of the market-data domain, read from the environment once per call.

The database and the hot cache (Redis) are the platform's settings
(:func:`ats_pipelines.config.load_settings`); exchange, symbols, first day and exchange URL are
the universe every domain shares (:mod:`ats_pipelines.universe`, which documents their
variables). Like them, nothing is read at import time: the Dagster definitions call
:func:`load_market_data_settings` when they load (partitions must exist then), and tests build
their own :class:`MarketDataSettings`.

Variables of this domain (all optional):

* ``ATS_RETENTION`` — ``table=age`` pairs (``market.trades=90d,market.order_book_snapshots=30d``),
  ``off`` as an age keeps a table forever;
* ``ATS_COMPRESSION`` — the same form: compress chunks older than the age (``timescale`` licence).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ats_pipelines.config import ConfigError
from ats_pipelines.universe import (
    DEFAULT_EXCHANGE,
    DEFAULT_START,
    DEFAULT_SYMBOLS,
    EMULATOR_URL,
    Universe,
    check_universe,
    load_universe,
)

ROLLUP_TIMEFRAMES = ("5m", "15m", "1h", "4h", "1d")

# Candles keep every timeframe in one table, so dropping its chunks would drop daily bars with
# the minutes: candles are kept unless configured. The rest matches sql/020's policies.
DEFAULT_RETENTION: dict[str, timedelta] = {
    "market.order_book_snapshots": timedelta(days=30),
    "market.order_book_1s_agg": timedelta(days=90),
}
DEFAULT_COMPRESSION: dict[str, timedelta] = {
    "market.candles": timedelta(days=30),
    "market.trades": timedelta(days=7),
    "market.order_book_snapshots": timedelta(days=2),
}
RETENTION_TABLES = (
    "market.candles",
    "market.trades",
    "market.order_book_snapshots",
    "market.order_book_1s_agg",
    "market.order_book_1m_agg",
    "market.trade_flow_1m",
    "market.reference_candles",
    "market.funding_rates",
)

_AGE = re.compile(r"^(\d+)([mhdw])$")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class MarketDataSettings:
    """What the market-data assets ingest, from where, and how long tables keep rows.

    The first four fields are the :class:`~ats_pipelines.universe.Universe`'s.
    """

    exchange: str = DEFAULT_EXCHANGE
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start_date: str = DEFAULT_START
    exchange_url: str | None = EMULATOR_URL
    rollup_timeframes: tuple[str, ...] = ROLLUP_TIMEFRAMES
    retention: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    compression: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_COMPRESSION))

    def __post_init__(self) -> None:
        check_universe(self.exchange, self.symbols, self.start_date)
        for table in (*self.retention, *self.compression):
            if table not in RETENTION_TABLES:
                raise ConfigError(
                    f"retention/compression: {table!r} is not one of {', '.join(RETENTION_TABLES)}"
                )

    @property
    def universe(self) -> Universe:
        return Universe(self.exchange, self.symbols, self.start_date, self.exchange_url)


def parse_ages(text: str, variable: str) -> dict[str, timedelta | None]:
    """``table=30d,other=off`` -> ages (``None``: off); errors name the variable and pair."""
    out: dict[str, timedelta | None] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        table, sep, age = pair.partition("=")
        if not sep:
            raise ConfigError(f"{variable}: {pair!r} is not table=age (e.g. market.trades=90d)")
        age = age.strip()
        if age == "off":
            out[table.strip()] = None
            continue
        match = _AGE.match(age)
        if not match:
            raise ConfigError(
                f"{variable}: age {age!r} of {table.strip()} is not like 90d, 12h, 2w or off"
            )
        out[table.strip()] = timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
    return out


def _merged(
    defaults: dict[str, timedelta], text: str | None, variable: str
) -> dict[str, timedelta]:
    merged: dict[str, timedelta | None] = {**defaults, **parse_ages(text or "", variable)}
    return {k: v for k, v in merged.items() if v is not None}


def load_market_data_settings(
    environ: Mapping[str, str] | None = None, universe: Universe | None = None
) -> MarketDataSettings:
    """Resolve the market-data settings from ``environ`` (default: the process environment);
    ``universe`` if the caller loaded it already."""
    env = os.environ if environ is None else environ
    universe = universe or load_universe(env)
    return MarketDataSettings(
        exchange=universe.exchange,
        symbols=universe.symbols,
        start_date=universe.start_date,
        exchange_url=universe.exchange_url,
        retention=_merged(DEFAULT_RETENTION, env.get("ATS_RETENTION"), "ATS_RETENTION"),
        compression=_merged(DEFAULT_COMPRESSION, env.get("ATS_COMPRESSION"), "ATS_COMPRESSION"),
    )
