"""Daily × symbol partitions of market data, from the market-data settings.

Built when the definitions load (``definitions.py``), not at import: the symbols and the first
day come from the environment, and tests build their own.
"""

from collections.abc import Iterable

import dagster as dg

from ats_pipelines.warehouse.config import MarketDataSettings

DATE = "date"
SYMBOL = "symbol"


def market_partitions(settings: MarketDataSettings) -> dg.MultiPartitionsDefinition:
    """One partition per UTC day and configured symbol (keys like ``2024-05-01|BTC/USDT``)."""
    return dg.MultiPartitionsDefinition(
        {
            DATE: dg.DailyPartitionsDefinition(start_date=settings.start_date),
            SYMBOL: dg.StaticPartitionsDefinition(list(settings.symbols)),
        }
    )


def day_symbol_pairs(
    partitions: dg.MultiPartitionsDefinition, keys: Iterable[str]
) -> list[tuple[str, str]]:
    """``(day, symbol)`` of each partition key of a run (one key, or a ranged backfill's)."""
    pairs = []
    for key in keys:
        dims = partitions.get_partition_key_from_str(key).keys_by_dimension
        pairs.append((dims[DATE], dims[SYMBOL]))
    return pairs


def run_partition_keys(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    partitions: dg.MultiPartitionsDefinition,
) -> list[str]:
    """The partition keys a step covers, in single-partition and ranged runs alike."""
    if isinstance(context, dg.AssetExecutionContext):
        return list(context.partition_keys)
    if context.has_partition_key:
        return [context.partition_key]
    return list(partitions.get_partition_keys_in_range(context.partition_key_range))
