"""What features exist: names, families, windows and the schema of every feature file.

The one list both the computation (:mod:`ats_pipelines.features.compute`) and the Feast
repository (:mod:`ats_pipelines.features.repo`) read, so they cannot drift apart.

A family is one timeframe's table (``features_5m`` …). Every row describes one closed bar:
``ts`` is the bar's open time, ``event_timestamp`` its close (when the values became
knowable) and ``created_timestamp`` when they were computed. ``features_1m`` also carries the
order book of the minute, the time of day, and the latest closed bar of each higher timeframe
(``tf5m_rsi_14`` …).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from ats_pipelines.lib.timeframes import to_timedelta

BASE_TIMEFRAME = "1m"
HIGHER_TIMEFRAMES = ("5m", "15m", "1h", "4h")
FAMILY_TIMEFRAMES = (BASE_TIMEFRAME, *HIGHER_TIMEFRAMES)
EXPORT_TIMEFRAMES = (*FAMILY_TIMEFRAMES, "1d")

# Windows, in bars of the family's timeframe.
RETURN_HORIZONS = (1, 5, 15, 60)
VOLATILITY_WINDOWS = (15, 60)
ATR_WINDOW = 14
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
# EMAs are truncated to this many spans (weights renormalised): every feature is then a
# function of a fixed number of past bars, which is what makes a partition's rows independent
# of where its computation started. The dropped tail weighs exp(-8) ~ 0.03 % of an EMA.
EMA_SPANS_KEPT = 4
VWAP_WINDOW = 60
VOLUME_Z_WINDOWS = (15, 60)
BOOK_MEAN_WINDOW = 15

BAR_FEATURES: tuple[str, ...] = (
    *(f"ret_{n}" for n in RETURN_HORIZONS),
    *(f"rv_{n}" for n in VOLATILITY_WINDOWS),
    f"atr_{ATR_WINDOW}",
    f"natr_{ATR_WINDOW}",
    f"rsi_{RSI_WINDOW}",
    "macd",
    "macd_signal",
    "macd_hist",
    f"vwap_dev_{VWAP_WINDOW}",
    *(f"volume_z_{n}" for n in VOLUME_Z_WINDOWS),
    "range_ratio",
    "body_ratio",
    "upper_wick_ratio",
    "lower_wick_ratio",
    "close_position",
    "taker_buy_ratio",
)
BOOK_FEATURES: tuple[str, ...] = (
    "spread_bps",
    f"spread_bps_mean_{BOOK_MEAN_WINDOW}",
    "imbalance_1",
    "imbalance_5",
    "imbalance_10",
    f"imbalance_5_mean_{BOOK_MEAN_WINDOW}",
    "depth_imbalance_5pct",
)
TIME_FEATURES: tuple[str, ...] = (
    "minute_of_day",
    "hour_of_day",
    "day_of_week",
    "tod_sin",
    "tod_cos",
)
INT_FEATURES = frozenset({"minute_of_day", "hour_of_day", "day_of_week"})
# The higher-timeframe columns a 1-minute row carries (of the latest closed bar).
MTF_FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_15",
    f"rsi_{RSI_WINDOW}",
    f"natr_{ATR_WINDOW}",
    "macd_hist",
    "volume_z_60",
)

KEY_COLUMNS = ("exchange", "symbol", "ts", "event_timestamp", "created_timestamp")
TIMESTAMP = pa.timestamp("us", tz="UTC")


def mtf_column(timeframe: str, feature: str) -> str:
    """Name of a higher-timeframe column in ``features_1m`` (``tf1h_rsi_14``)."""
    return f"tf{timeframe}_{feature}"


def _mtf_columns() -> tuple[str, ...]:
    return tuple(mtf_column(tf, f) for tf in HIGHER_TIMEFRAMES for f in MTF_FEATURES)


@dataclass(frozen=True)
class Family:
    """One timeframe's feature table and Feast feature view."""

    name: str
    timeframe: str
    features: tuple[str, ...]
    ttl: timedelta  # Feast: how old a row may be and still be served for an entity time

    @property
    def dataset(self) -> str:
        return f"features/{self.name}"

    @property
    def bar(self) -> timedelta:
        return to_timedelta(self.timeframe)

    def schema(self) -> pa.Schema:
        fields = [
            pa.field("exchange", pa.string(), nullable=False),
            pa.field("symbol", pa.string(), nullable=False),
            pa.field("ts", TIMESTAMP, nullable=False),
            pa.field("event_timestamp", TIMESTAMP, nullable=False),
            pa.field("created_timestamp", TIMESTAMP, nullable=False),
        ]
        fields += [
            pa.field(f, pa.int64() if f in INT_FEATURES else pa.float64()) for f in self.features
        ]
        return pa.schema(fields)


def _family(timeframe: str, features: tuple[str, ...]) -> Family:
    # Two bars of slack: a row is served until the bar after next has closed.
    return Family(f"features_{timeframe}", timeframe, features, 2 * to_timedelta(timeframe))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _family(BASE_TIMEFRAME, (*BAR_FEATURES, *BOOK_FEATURES, *TIME_FEATURES, *_mtf_columns())),
        *(_family(tf, BAR_FEATURES) for tf in HIGHER_TIMEFRAMES),
    )
}
BASE_FAMILY = FAMILIES[f"features_{BASE_TIMEFRAME}"]


def family_of(timeframe: str) -> Family:
    try:
        return FAMILIES[f"features_{timeframe}"]
    except KeyError:
        raise ValueError(
            f"no feature family for timeframe {timeframe!r}; families: "
            f"{', '.join(FAMILY_TIMEFRAMES)}"
        ) from None


# Versioned Feast feature services (ats_pipelines.features.repo builds them).
SERVICES: dict[str, tuple[str, ...]] = {
    "signals_v1": (BASE_FAMILY.name,),
    "context_v1": tuple(f"features_{tf}" for tf in HIGHER_TIMEFRAMES),
}


def definitions_fingerprint(lake_root: Path) -> str:
    """A digest of what the Feast repository defines (the ``feast_registry`` asset's code
    version), computed without importing Feast."""
    spec = {
        "families": {
            f.name: [f.timeframe, list(f.features), f.ttl.total_seconds()]
            for f in FAMILIES.values()
        },
        "services": SERVICES,
        "lake": str(lake_root),
        "code": hashlib.sha256((Path(__file__).parent / "repo.py").read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
