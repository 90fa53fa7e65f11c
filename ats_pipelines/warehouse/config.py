"""Settings of the market-data domain, read from the environment once per call.

The database and the hot cache (Redis) are the platform's settings
(:func:`ats_pipelines.config.load_settings`). Like it, nothing is read at import time: the Dagster
definitions call :func:`load_market_data_settings` when they load (partitions must exist then),
and tests build their own :class:`MarketDataSettings`.

Variables (all optional):

* ``ATS_EXCHANGE`` — ccxt id of the exchange, also the name rows are stored under (``binance``);
* ``ATS_SYMBOLS`` — comma-separated ccxt unified symbols (``BTC/USDT,ETH/USDT``);
* ``ATS_MARKET_DATA_START`` — first day of the daily partitions (``2024-01-01``);
* ``ATS_EXCHANGE_URL`` — REST base replacing the exchange's hosts (the emulator); local and
  test default to the ``ats emulator`` address, prod to the real exchange;
* ``ATS_RETENTION`` — ``table=age`` pairs (``market.trades=90d,market.order_book_snapshots=30d``),
  ``off`` as an age keeps a table forever;
* ``ATS_COMPRESSION`` — the same form: compress chunks older than the age (``timescale`` licence).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from ats_pipelines.config import ConfigError, load_settings

DEFAULT_EXCHANGE = "binance"
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT")
DEFAULT_START = "2024-01-01"
EMULATOR_URL = "http://127.0.0.1:8765"  # `ats emulator`'s default address
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

_SYMBOL = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)?$")
_AGE = re.compile(r"^(\d+)([mhdw])$")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class MarketDataSettings:
    """What the market-data assets ingest, from where, and how long tables keep rows."""

    exchange: str = DEFAULT_EXCHANGE
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start_date: str = DEFAULT_START
    exchange_url: str | None = EMULATOR_URL
    rollup_timeframes: tuple[str, ...] = ROLLUP_TIMEFRAMES
    retention: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    compression: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_COMPRESSION))

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.exchange):
            raise ConfigError(f"ATS_EXCHANGE={self.exchange!r}: use a ccxt id (lowercase, _)")
        if not self.symbols:
            raise ConfigError("ATS_SYMBOLS is empty: name at least one symbol (BTC/USDT)")
        for symbol in self.symbols:
            if not _SYMBOL.match(symbol):
                raise ConfigError(
                    f"ATS_SYMBOLS: {symbol!r} is not a ccxt unified symbol such as BTC/USDT"
                )
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError(f"ATS_SYMBOLS repeats a symbol: {','.join(self.symbols)}")
        try:
            date.fromisoformat(self.start_date)
        except ValueError:
            raise ConfigError(
                f"ATS_MARKET_DATA_START={self.start_date!r} is not a date (YYYY-MM-DD)"
            ) from None
        for table in (*self.retention, *self.compression):
            if table not in RETENTION_TABLES:
                raise ConfigError(
                    f"retention/compression: {table!r} is not one of {', '.join(RETENTION_TABLES)}"
                )


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


def load_market_data_settings(environ: Mapping[str, str] | None = None) -> MarketDataSettings:
    """Resolve the market-data settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    base = load_settings(env)
    symbols = tuple(
        s.strip() for s in env.get("ATS_SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",") if s.strip()
    )
    default_url = None if base.ats_env == "prod" else EMULATOR_URL
    return MarketDataSettings(
        exchange=env.get("ATS_EXCHANGE", DEFAULT_EXCHANGE).strip(),
        symbols=symbols,
        start_date=env.get("ATS_MARKET_DATA_START", DEFAULT_START).strip(),
        exchange_url=env.get("ATS_EXCHANGE_URL", default_url) or None,
        retention=_merged(DEFAULT_RETENTION, env.get("ATS_RETENTION"), "ATS_RETENTION"),
        compression=_merged(DEFAULT_COMPRESSION, env.get("ATS_COMPRESSION"), "ATS_COMPRESSION"),
    )
