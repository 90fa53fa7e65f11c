"""The analysts' name for the read API: ``from ats_pipelines import marketdata as md``.

The code lives in :mod:`ats_pipelines.reader` (the package that reads stored market data; its
writing counterpart is :mod:`ats_pipelines.warehouse`). This module only re-exports it, so
notebooks and models written against ``ats_pipelines.marketdata`` keep working:
``md.get_bars``, ``md.get_multi_timeframe``, ``md.get_order_book``, ``md.get_inference_data``,
``md.MarketData``, ``md.schemas``, and the shared ``md.default_provider()``.
"""

from ats_pipelines.reader import (
    Aggregation,
    InferenceContext,
    MarketData,
    default_provider,
    get_bars,
    get_inference_data,
    get_multi_timeframe,
    get_order_book,
    schemas,
)

__all__ = [
    "Aggregation",
    "InferenceContext",
    "MarketData",
    "default_provider",
    "get_bars",
    "get_inference_data",
    "get_multi_timeframe",
    "get_order_book",
    "schemas",
]
