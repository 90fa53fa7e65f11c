"""Names, severities and blocking of every quality check, shared by the Dagster asset checks and
the report (so a check's history lines up whichever of the two ran it).

Blocking where bad data must not flow on (candles -> features -> training); WARN where a
failure informs (aggregates, reconciliation); freshness is an ERROR an operator acts on, but
blocks nothing (there is nothing downstream of a table's age).
"""

from __future__ import annotations

from dataclasses import dataclass

from ats_pipelines.features.catalog import FAMILIES
from ats_pipelines.features.labels import LabelSpec

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class CheckSpec:
    asset: str
    name: str
    severity: str
    blocking: bool
    description: str


CANDLE_ROLLUPS = ("5m", "15m", "1h", "4h", "1d")
SPECS: dict[tuple[str, str], CheckSpec] = {}


def _add(asset: str, name: str, severity: str, blocking: bool, description: str) -> CheckSpec:
    spec = CheckSpec(asset, name, severity, blocking, description)
    SPECS[(asset, name)] = spec
    return spec


CANDLES_1M = _add(
    "candles_1m",
    "candles_suite",
    ERROR,
    True,
    "GX suite: the validator's OHLCV rules, unique key, monotonic and aligned "
    "timestamps, coverage of the day within tolerance.",
)
ROLLUPS = {
    tf: _add(
        f"candles_{tf}",
        "candles_suite",
        ERROR,
        True,
        f"GX suite on the {tf} rollup over the recent window: OHLCV rules, key, "
        "alignment, coverage.",
    )
    for tf in CANDLE_ROLLUPS
}
BOOK_AGG = {
    tf: _add(
        f"order_book_{tf}_agg",
        "order_book_agg_suite",
        WARN,
        False,
        f"GX suite on {tf} order-book aggregates: key, alignment, mid bounds, "
        "spread and imbalance ranges.",
    )
    for tf in ("1s", "1m")
}
TRADE_FLOW = _add(
    "trade_flow_1m",
    "trade_flow_suite",
    WARN,
    False,
    "GX suite on per-minute trade flow: key, alignment, non-negative flow, vwap.",
)
TRADES = _add(
    "market.trades",
    "trades_suite",
    WARN,
    False,
    "GX suite on trades: validator rules, unique ids, time order, cost.",
)
BOOKS = _add(
    "market.order_book_snapshots",
    "order_book_suite",
    WARN,
    False,
    "GX suite on order-book snapshots: ordering, uncrossed, mid, spread and imbalance.",
)
SIGNALS = _add(
    "predictions",
    "predictions_suite",
    ERROR,
    False,
    "GX suite on the predictions written to signals.signals: probabilities in "
    "[0, 1] summing to 1, proba of the predicted class, one per bar and model.",
)
STREAM_REST = _add(
    "stream_bars",
    "bars_match_rest",
    WARN,
    False,
    "Stream-built 1m bars equal the REST klines of the same minutes.",
)
HISTORY_REST = _add(
    "candles_1m",
    "history_matches_rest",
    WARN,
    False,
    "Migrated 1m history equals the REST klines where both exist.",
)
CEX_DEX = _add(
    "candles_1m",
    "cex_matches_dex",
    WARN,
    False,
    "DEX prices stay within tolerance of the CEX price of the same asset and minute.",
)
FRESHNESS = _add(
    "stream_bars",
    "bars_fresh",
    ERROR,
    False,
    "Streamed symbols: shard heartbeat recent and newest 1m bar within the lag "
    "(quiet markets excepted).",
)
FEATURES = {
    name: _add(
        name,
        "features_suite",
        ERROR,
        True,
        f"GX suite on {name}: required features not null after the warm-up, "
        "declared ranges, rows in line with the candles.",
    )
    for name in FAMILIES
}
LABELS = _add(
    LabelSpec.name,
    "labels_suite",
    ERROR,
    True,
    "GX suite on labels: known classes, no missing label, class balance within "
    "bounds (forward-return and triple-barrier labels).",
)


def spec(asset: str, name: str) -> CheckSpec:
    return SPECS[(asset, name)]
