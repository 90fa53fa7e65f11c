"""Rule ids of the quality suites: the ingestion validator's (``lib.validation.RULES``), so a
suite failure and a quarantined row name the same rule, plus rules only a whole batch can break
(ordering, coverage, distributions, cross-row consistency)."""

from __future__ import annotations

from ats_pipelines.lib.validation import RULES as VALIDATOR_RULES

QUALITY_RULES: dict[str, str] = {
    "ohlcv.ts_monotonic": "timestamps strictly increase within each series (in delivery order)",
    "ohlcv.coverage": "bars plus confirmed-empty intervals cover the window within tolerance",
    "trade.ts_monotonic": "trade timestamps never go backwards within a symbol",
    "trade.cost": "cost equals price x amount (relative 1e-6)",
    "book.ts_monotonic": "snapshot timestamps strictly increase within a symbol",
    "book.spread_range": "spread >= 0 and spread_bps within the configured maximum",
    "book.imbalance_range": "imbalances lie in [-1, 1]",
    "book.mid_inside": "mid lies between the best bid and the best ask",
    "book_agg.duplicate_key": "(exchange, symbol, ts) is unique",
    "book_agg.ts_aligned": "the bucket's ts is aligned to its timeframe",
    "book_agg.snapshots": "every bucket aggregates at least one snapshot",
    "book_agg.mid_bounds": "mid_low > 0, mid_high >= mid_low, open and close within [low, high]",
    "book_agg.spread_range": "spread means >= 0, spread_max >= spread_mean, bps within maximum",
    "book_agg.imbalance_range": "mean imbalances lie in [-1, 1]",
    "flow.duplicate_key": "(exchange, symbol, ts) is unique",
    "flow.ts_aligned": "the minute's ts is aligned to 1m",
    "flow.nonnegative": "volumes and counts are >= 0",
    "flow.vwap": "vwap > 0 wherever there was volume",
    "features.rows_vs_candles": "feature rows per symbol are in line with the candles",
    "features.no_nulls": "no feature is null/NaN after the warm-up window",
    "features.range": "features lie in their declared ranges (finite otherwise)",
    "features.duplicate_key": "(symbol, ts) is unique",
    "labels.classes": "labels are one of the known classes",
    "labels.class_balance": "each class's share lies within the configured bounds",
    "labels.no_nulls": "every row before the label horizon has a label",
    "signals.ts_missing": "the prediction's timestamp is present",
    "signals.proba_range": "probabilities lie in [0, 1]",
    "signals.probas_sum": "the class probabilities sum to 1",
    "signals.proba_is_pred": "proba is the probability of the predicted class",
    "signals.pred": "pred is BUY, SELL or HOLD",
    "signals.one_per_bar": "one prediction per bar and model",
    "signals.ts_aligned": "the prediction's ts is aligned to its timeframe",
    "signals.latency": "latency_ms >= 0",
    "reconcile.stream_rest": "stream-built bars equal REST klines of the same minutes",
    "reconcile.history_rest": "migrated history equals REST klines where both exist",
    "reconcile.cex_dex": "DEX prices stay within tolerance of the CEX price of the minute",
    "freshness.heartbeat": "every streaming shard beat within the allowed age",
    "freshness.bars": "stream bars are no older than the allowed lag (quiet markets excepted)",
}

RULES: dict[str, str] = {**VALIDATOR_RULES, **QUALITY_RULES}


def describe(rule: str) -> str:
    """What ``rule`` demands (the id itself when unknown)."""
    return RULES.get(rule, rule)
