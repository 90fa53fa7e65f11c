"""Training sets: labels as Feast entity rows, features joined point in time.

Each label row (symbol, exchange, decision time = ``event_timestamp``) asks Feast for the
features as they were at that time; the label columns ride along untouched. Labels never pass
through a feature view, so they cannot leak into features.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl

from ats_pipelines.features.labels import LABEL_SCHEMA, LabelSpec
from ats_pipelines.features.lake import Lake

if TYPE_CHECKING:
    from feast import FeatureStore

LABEL_COLUMNS = (
    "label",
    "forward_return",
    "tb_label",
    "tb_exit",
    "tb_bars",
    "tb_return",
    "tb_reward_risk",
)


def read_labels(
    lake: Lake,
    start: datetime,
    end: datetime,
    *,
    symbols: Sequence[str] | None = None,
    spec: LabelSpec | None = None,
    columns: Sequence[str] = LABEL_COLUMNS,
) -> pd.DataFrame:
    """Label rows with decision time in ``[start, end)`` (all symbols unless given)."""
    folder = lake.dataset_dir((spec or LabelSpec()).dataset)
    files = sorted(folder.glob("*/*/*.parquet"))
    if not files:
        empty = pl.DataFrame(pl.from_arrow(LABEL_SCHEMA.empty_table()))
        return empty.select("symbol", "exchange", "event_timestamp", *columns).to_pandas()
    frame = pl.scan_parquet(files).filter(
        (pl.col("event_timestamp") >= start) & (pl.col("event_timestamp") < end)
    )
    if symbols:
        frame = frame.filter(pl.col("symbol").is_in(list(symbols)))
    return (
        frame.select("symbol", "exchange", "event_timestamp", *columns)
        .sort("symbol", "event_timestamp")
        .collect()
        .to_pandas()
    )


def training_frame(
    store: FeatureStore,
    labels: pd.DataFrame,
    service: str = "signals_v1",
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """``labels`` with the service's features as of each row's decision time."""
    return store.get_historical_features(
        entity_df=labels,
        features=store.get_feature_service(service),
        full_feature_names=full_feature_names,
    ).to_df()
