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

from ats_pipelines.features.labels import LabelSpec
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


class NoLabelsError(ValueError):
    """A window holds no label rows; the message names the window and what the lake holds."""


def _span(frame: pl.LazyFrame) -> str:
    row = frame.select(
        pl.col("event_timestamp").min().alias("lo"), pl.col("event_timestamp").max().alias("hi")
    ).collect()
    lo, hi = row["lo"][0], row["hi"][0]
    return f"; the lake's labels span {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M}" if lo else ""


def read_labels(
    lake: Lake,
    start: datetime,
    end: datetime,
    *,
    symbols: Sequence[str] | None = None,
    spec: LabelSpec | None = None,
    columns: Sequence[str] = LABEL_COLUMNS,
) -> pd.DataFrame:
    """Label rows with decision time in ``[start, end)`` (all symbols unless given).

    Raises :class:`NoLabelsError` (one line naming the window) when the window holds none.
    """
    folder = lake.dataset_dir((spec or LabelSpec()).dataset)
    files = sorted(folder.glob("*/*/*.parquet"))
    scan = pl.scan_parquet(files) if files else None
    frame = None
    if scan is not None:
        frame = scan.filter(
            (pl.col("event_timestamp") >= start) & (pl.col("event_timestamp") < end)
        )
        if symbols:
            frame = frame.filter(pl.col("symbol").is_in(list(symbols)))
        frame = (
            frame.select("symbol", "exchange", "event_timestamp", *columns)
            .sort("symbol", "event_timestamp")
            .collect()
        )
    if frame is None or frame.is_empty():
        which = f" of {', '.join(symbols)}" if symbols else ""
        raise NoLabelsError(
            f"no labels{which} in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC under "
            f"{folder}{_span(scan) if scan is not None else ' (none built yet)'}: choose a "
            "window inside it, or build labels first (make demo)"
        )
    return frame.to_pandas()


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
