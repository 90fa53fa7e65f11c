"""Training sets, recent features and online features from the Feast store.

Training set of a scope over ``[start, end)``:

1. the scope's label set is read from the Parquet lake (``labels/<label_set>``: one row per
   decision bar with its ``event_timestamp`` = the bar's close, the triple-barrier class
   ``tb_label``, ``label_timestamp`` = when the outcome was known, and ``tb_reward_risk``);
   labels live apart from features and never enter a feature view;
2. those rows are the entity dataframe of ``FeatureStore.get_historical_features`` with the
   scope's feature service (``signals_v1`` …; through
   :func:`ats_pipelines.features.training.training_frame`): Feast joins each row to the
   features as of its decision time, point in time (the project's DuckDB ``ASOF`` offline
   store). Only labels known by the window's end are used (``label_timestamp <= end``);
3. features become ``X``; ``tb_label`` the class, ``label_timestamp`` the label end (what
   purging needs), ``tb_reward_risk`` the long side's realised R.

The label files' spec (written into every file by the features build) must match the scope's
barriers, or the outcomes the loop later measures would follow another definition.

Online: ``get_online_features`` with the same service for each (exchange, symbol) of the
scope; the row's bar is its event timestamp (the bar's close) minus one bar.
"""

from __future__ import annotations

import ast
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.training.config import ModelScope
from ats_pipelines.training.dataset import CLASSES, TrainingDataError, TrainingSet, to_utc_ns
from ats_pipelines.training.predict import LatestFeatures

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from ats_pipelines.features.lake import Lake

LABEL_COLUMNS = (
    "exchange",
    "symbol",
    "event_timestamp",
    "label_timestamp",
    "tb_label",
    "tb_reward_risk",
)
TIMESTAMP_POSTFIX = "__ts"  # Feast's online response suffix of a feature's event time


def service_features(service: FeatureService, full_feature_names: bool = False) -> list[str]:
    """The output column names of a feature service's features, in service order."""
    out = []
    for projection in service.feature_view_projections:
        for feature in projection.features:
            out.append(
                f"{projection.name_to_use()}__{feature.name}"
                if full_feature_names
                else feature.name
            )
    return out


def _days(start: datetime, end: datetime) -> list:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _check_spec(path: Path, scope: ModelScope) -> None:
    from ats_pipelines.features.lake import file_metadata

    text = file_metadata(path).get("ats.label_spec")
    if text is None:
        return
    spec = ast.literal_eval(text)
    wanted = {
        "timeframe": scope.timeframe,
        "horizon": scope.barriers.horizon,
        "stop_loss": scope.barriers.risk,
        "take_profit": round(scope.barriers.risk * scope.barriers.reward, 12),
    }
    found = {k: spec.get(k) for k in wanted}

    def differs(key: str, value: object) -> bool:
        if key == "timeframe":
            return found[key] != value
        return not np.isclose(float(found[key] or 0), float(value))  # type: ignore[arg-type]

    if any(differs(k, v) for k, v in wanted.items()):
        raise TrainingDataError(
            f"{path}: label spec {found} differs from scope "
            f"{scope.name}'s barriers {wanted}; align ATS_LABEL_* with the "
            "label set"
        )


class FeastTrainingSetSource:
    """Labels from the lake + features from Feast (see the module docstring)."""

    def __init__(
        self, store: FeatureStore, lake: Lake, scope: ModelScope, full_feature_names: bool = False
    ) -> None:
        self.store, self.lake, self.scope = store, lake, scope
        self.full_feature_names = full_feature_names

    def labels(self, start: datetime, end: datetime) -> pd.DataFrame:
        from ats_pipelines.features.lake import read_table

        dataset = f"labels/{self.scope.label_set}"
        frames = []
        for symbol in self.scope.symbols:
            files = self.lake.files(dataset, self.scope.exchange, symbol, _days(start, end))
            if files:
                _check_spec(files[0], self.scope)
                frames.append(read_table(files).select(list(LABEL_COLUMNS)).to_pandas())
        if not frames:
            raise TrainingDataError(
                f"no label files of {dataset} for {self.scope.exchange} "
                f"{', '.join(self.scope.symbols)} between {start:%Y-%m-%d} and {end:%Y-%m-%d} "
                f"under {self.lake.root}; materialise the labels first"
            )
        labels = pd.concat(frames, ignore_index=True)
        keep = (
            (labels["event_timestamp"] >= start)
            & (labels["event_timestamp"] < end)
            & (labels["label_timestamp"] <= end)
        )
        kept = pd.DataFrame(labels.loc[keep])
        return kept.sort_values(by=["event_timestamp", "symbol"], kind="stable").reset_index(
            drop=True
        )

    def load(self, scope: str, start: datetime, end: datetime) -> TrainingSet:
        labels = self.labels(start, end)
        from ats_pipelines.features.training import training_frame

        service = self.store.get_feature_service(self.scope.feature_service)
        names = service_features(service, self.full_feature_names)
        frame = training_frame(
            self.store, labels, self.scope.feature_service, self.full_feature_names
        )
        if len(frame) != len(labels):
            raise TrainingDataError(
                f"Feast returned {len(frame)} rows for {len(labels)} label rows"
            )
        frame = frame.sort_values(by=["event_timestamp", "symbol"], kind="stable")
        frame = frame.reset_index(drop=True)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise TrainingDataError(
                f"feature service {self.scope.feature_service} did not return {missing[:10]}"
            )
        codes = {name: i for i, name in enumerate(CLASSES)}
        unknown = set(frame["tb_label"]) - set(codes)
        if unknown:
            raise TrainingDataError(
                f"label set {self.scope.label_set}: unknown classes {sorted(unknown)}"
            )
        return TrainingSet(
            X=pd.DataFrame(frame.loc[:, names].astype("float64")),
            y=np.array([codes[v] for v in frame["tb_label"]], dtype=np.int8),
            event_ts=to_utc_ns(frame["event_timestamp"], "event_timestamp"),
            label_end_ts=to_utc_ns(frame["label_timestamp"], "label_timestamp"),
            realized_rr=frame["tb_reward_risk"].to_numpy(np.float64),
            entities=pd.DataFrame(frame.loc[:, ["exchange", "symbol"]]),
            feature_service=self.scope.feature_service,
        )

    def recent_features(self, features: list[str], start: datetime, end: datetime) -> pd.DataFrame:
        """Features as of every bar close in ``[start, end)`` of every symbol (for drift)."""
        bar = to_timedelta(self.scope.timeframe)
        closes = pd.date_range(start, end, freq=bar, inclusive="left", tz="UTC")
        entity_df = pd.DataFrame(
            {
                "exchange": self.scope.exchange,
                "symbol": [s for s in self.scope.symbols for _ in closes],
                "event_timestamp": [t for _ in self.scope.symbols for t in closes],
            }
        )
        if entity_df.empty:
            return pd.DataFrame({f: pd.Series(dtype="float64") for f in features})
        from ats_pipelines.features.training import training_frame

        frame = training_frame(
            self.store, entity_df, self.scope.feature_service, self.full_feature_names
        )
        present = [f for f in features if f in frame.columns]
        return pd.DataFrame(frame.loc[:, present]).dropna(how="all").reset_index(drop=True)


class FeastOnlineSource:
    """The newest served feature vector of each symbol of a scope."""

    def __init__(self, store: FeatureStore, full_feature_names: bool = False) -> None:
        self.store, self.full_feature_names = store, full_feature_names

    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        started = time.perf_counter()
        service = self.store.get_feature_service(scope.feature_service)
        rows = [{"exchange": scope.exchange, "symbol": s} for s in scope.symbols]
        response = self.store.get_online_features(
            features=service, entity_rows=rows, full_feature_names=self.full_feature_names
        )
        data: dict[str, Any] = response.to_dict(include_event_timestamps=True)
        fetch_ms = (time.perf_counter() - started) * 1000.0
        frame = pd.DataFrame(data)
        stamps = [c for c in frame.columns if c.endswith(TIMESTAMP_POSTFIX)]
        event = (
            pd.to_datetime(frame[stamps].max(axis=1), unit="s", utc=True)
            if stamps
            else pd.Series(pd.NaT, index=frame.index)
        )
        served = event.notna()
        entities = pd.DataFrame(
            {
                "exchange": frame["exchange"],
                "symbol": frame["symbol"],
                "ts": event - to_timedelta(scope.timeframe),
            }
        )[served]
        X = frame.loc[served, [f for f in features if f in frame.columns]]
        for f in features:  # an absent feature is scored as missing (and recorded as null)
            if f not in X.columns:
                X[f] = np.nan
        return LatestFeatures(
            pd.DataFrame(entities).reset_index(drop=True),
            X[features].astype("float64").reset_index(drop=True),
            fetch_ms,
        )
