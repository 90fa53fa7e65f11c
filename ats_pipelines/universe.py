"""The universe: which exchange, which symbols, from which day — the one market setting every
domain shares (ingestion, streaming, features, training, signals, the read API).

Loaded once by whoever starts the work (a code location's definitions, ``ats stream``, the
demo) and passed down; domains that need only these take a :class:`Universe`, not the
market-data domain's settings (whose retention and compression they do not read).

Variables (all optional): ``ATS_EXCHANGE`` — ccxt id, also the name rows are stored under
(``binance``); ``ATS_SYMBOLS`` — comma-separated ccxt unified symbols (``BTC/USDT,ETH/USDT``);
``ATS_MARKET_DATA_START`` — first day of the daily partitions (``2024-01-01``);
``ATS_EXCHANGE_URL`` — REST base replacing the exchange's hosts (local and test default to the
``ats emulator`` address, prod to the real exchange).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from ats_pipelines.config import ConfigError, load_settings

DEFAULT_EXCHANGE = "binance"
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT")
DEFAULT_START = "2024-01-01"
EMULATOR_URL = "http://127.0.0.1:8765"  # `ats emulator`'s default address

_SYMBOL = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)?$")


@dataclass(frozen=True)
class Universe:
    """What is traded (exchange, symbols), since when, and where the exchange is reached."""

    exchange: str = DEFAULT_EXCHANGE
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start_date: str = DEFAULT_START
    exchange_url: str | None = EMULATOR_URL

    def __post_init__(self) -> None:
        check_universe(self.exchange, self.symbols, self.start_date)


def check_universe(exchange: str, symbols: tuple[str, ...], start_date: str) -> None:
    """One line naming the variable for a bad exchange id, symbol list or first day."""
    if not re.fullmatch(r"[a-z0-9_]+", exchange):
        raise ConfigError(f"ATS_EXCHANGE={exchange!r}: use a ccxt id (lowercase, _)")
    if not symbols:
        raise ConfigError("ATS_SYMBOLS is empty: name at least one symbol (BTC/USDT)")
    for symbol in symbols:
        if not _SYMBOL.match(symbol):
            raise ConfigError(
                f"ATS_SYMBOLS: {symbol!r} is not a ccxt unified symbol such as BTC/USDT"
            )
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"ATS_SYMBOLS repeats a symbol: {','.join(symbols)}")
    try:
        date.fromisoformat(start_date)
    except ValueError:
        raise ConfigError(
            f"ATS_MARKET_DATA_START={start_date!r} is not a date (YYYY-MM-DD)"
        ) from None


def load_universe(environ: Mapping[str, str] | None = None) -> Universe:
    """Resolve the universe from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    symbols = tuple(
        s.strip() for s in env.get("ATS_SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",") if s.strip()
    )
    default_url = None if load_settings(env).ats_env == "prod" else EMULATOR_URL
    return Universe(
        exchange=env.get("ATS_EXCHANGE", DEFAULT_EXCHANGE).strip(),
        symbols=symbols,
        start_date=env.get("ATS_MARKET_DATA_START", DEFAULT_START).strip(),
        exchange_url=env.get("ATS_EXCHANGE_URL", default_url) or None,
    )
