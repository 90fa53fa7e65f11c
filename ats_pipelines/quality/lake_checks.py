"""Feature and label partitions of the Parquet lake against their suites.

A day of features is held against the candles of the same day in TimescaleDB (the rows they
were computed from), and its first rows are exempt from the null rule only while the series'
history is shorter than the features' warm-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import polars as pl

from ats_pipelines.features.builder import WARMUP_ROWS
from ats_pipelines.features.catalog import Family
from ats_pipelines.features.labels import LABEL_SCHEMA
from ats_pipelines.features.lake import Lake
from ats_pipelines.quality import features_spec as spec
from ats_pipelines.quality import loaders, validate
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.runner import SuiteOutcome

_NOT_FEATURES = ("event_timestamp", "created_timestamp")


def day_window(days: Sequence[date]) -> tuple[datetime, datetime]:
    return (
        datetime.combine(min(days), time(), UTC),
        datetime.combine(max(days) + timedelta(days=1), time(), UTC),
    )


def _read(
    lake: Lake,
    dataset: str,
    exchange: str,
    days_by_symbol: Mapping[str, Sequence[date]],
    empty: pl.DataFrame,
) -> pl.DataFrame:
    frames = [
        spec.read_partitions(lake, dataset, exchange, [symbol], days)
        for symbol, days in days_by_symbol.items()
    ]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else empty


async def check_feature_days(
    conn: asyncpg.Connection,
    lake: Lake,
    family: Family,
    exchange: str,
    days_by_symbol: Mapping[str, Sequence[date]],
    policy: QualityPolicy,
) -> SuiteOutcome:
    empty = pl.DataFrame(pl.from_arrow(family.schema().empty_table()))
    frame = _read(lake, family.dataset, exchange, days_by_symbol, empty)
    counts: dict[str, int] = {}
    before: dict[str, int] = {}
    for symbol, days in days_by_symbol.items():
        window = day_window(days)
        counts |= await loaders.candle_counts(conn, exchange, [symbol], family.timeframe, *window)
        before |= await loaders.bars_before(
            conn, exchange, [symbol], family.timeframe, window[0], WARMUP_ROWS
        )
    ranged = replace(policy, feature_ranges=spec.ranges(family.features, policy.max_price))
    return validate.check_features(
        frame.drop([c for c in _NOT_FEATURES if c in frame.columns]),
        columns=family.features,
        policy=ranged,
        required=spec.required(family.features),
        warmup_rows=spec.warmup_rows(before),
        candle_rows=counts,
    )


def check_label_days(
    lake: Lake,
    dataset: str,
    exchange: str,
    days_by_symbol: Mapping[str, Sequence[date]],
    policy: QualityPolicy,
) -> SuiteOutcome:
    empty = pl.DataFrame(pl.from_arrow(LABEL_SCHEMA.empty_table()))
    frame = _read(lake, dataset, exchange, days_by_symbol, empty)
    return validate.check_labels(frame, policy=policy, label_cols=spec.LABEL_COLUMNS)
