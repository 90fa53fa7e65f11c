"""The read API analysts and models import: stored market data as typed polars frames.

    from ats_pipelines import marketdata as md

    bars = md.get_bars("BTC/USDT", "1h", start, end)                     # open time in [start, end)
    view = md.get_multi_timeframe("BTC/USDT", ["1m", "5m", "1h"], end, timedelta(days=1))
    book = md.get_order_book("BTC/USDT", at, aggregation="1s")           # "raw" | "1s" | "1m"
    data = md.get_inference_data("BTC/USDT")                             # latest, hot cache first

Every function takes ``exchange=`` (default: ``ATS_EXCHANGE``) and ``arrow=True`` for a
``pyarrow.Table`` instead of a polars frame; schemas are in :mod:`ats_pipelines.reader.schemas`.
The module-level functions share one :class:`MarketData` built from the environment on first use
(``ATS_DATABASE_URL`` or the managed database, ``ATS_REDIS_URL`` or the managed Redis); build
your own ``MarketData(database_url, exchange=..., redis_url=...)`` to choose.

Hot cache (owned by the streaming service, layout in :mod:`ats_pipelines.cache.keys`):
``ats:bars:{exchange}:{symbol}:{timeframe}`` is a sorted set of the latest final bars (score =
open time in epoch ms, member = JSON with ``ts`` and the bar's values). ``get_inference_data``
with ``at=None`` reads it; a timeframe the cache lacks, an unreachable Redis, or none configured
falls back to the database, logged once per provider and reason (``event=hot_cache_fallback``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa

from ats_pipelines.reader.provider import Aggregation, InferenceContext, MarketData

__all__ = [
    "Aggregation",
    "InferenceContext",
    "MarketData",
    "default_provider",
    "get_bars",
    "get_inference_data",
    "get_multi_timeframe",
    "get_order_book",
]

_default: MarketData | None = None
_default_lock = threading.Lock()


def default_provider() -> MarketData:
    """The shared provider of the module-level functions (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MarketData()
        return _default


def get_bars(
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    exchange: str | None = None,
    arrow: bool = False,
) -> pl.DataFrame | pa.Table:
    """Bars opening in ``[start, end)``; see :meth:`MarketData.get_bars`."""
    return default_provider().get_bars(
        symbol, timeframe, start, end, exchange=exchange, arrow=arrow
    )


def get_multi_timeframe(
    symbol: str,
    timeframes: Sequence[str],
    end: datetime,
    lookback: timedelta | str,
    *,
    exchange: str | None = None,
    arrow: bool = False,
) -> pl.DataFrame | pa.Table:
    """Timeframes aligned on bar close, no lookahead; see :meth:`MarketData.get_multi_timeframe`."""
    return default_provider().get_multi_timeframe(
        symbol, timeframes, end, lookback, exchange=exchange, arrow=arrow
    )


def get_order_book(
    symbol: str,
    at: datetime,
    aggregation: Aggregation = "raw",
    *,
    exchange: str | None = None,
    arrow: bool = False,
) -> pl.DataFrame | pa.Table:
    """The book as known at ``at``; see :meth:`MarketData.get_order_book`."""
    return default_provider().get_order_book(
        symbol, at, aggregation, exchange=exchange, arrow=arrow
    )


def get_inference_data(
    symbol: str,
    at: datetime | None = None,
    context: InferenceContext | None = None,
    *,
    exchange: str | None = None,
    arrow: bool = False,
) -> pl.DataFrame | pa.Table:
    """A model's inputs, latest from the hot cache or as of ``at`` from the database; see
    :meth:`MarketData.get_inference_data`."""
    return default_provider().get_inference_data(
        symbol, at, context, exchange=exchange, arrow=arrow
    )
