"""Scoring the latest features with the champion and writing ``signals.signals`` rows.

:class:`OnlineFeatureSource` returns the latest feature vector per entity (the Feast online
store in production: :class:`ats_pipelines.training.feast_source.FeastOnlineSource`) and how
long the fetch took; :func:`score` adds the inference time, so a row's ``latency_ms`` is what
its signal waited for (feature fetch + inference of its batch). Each row carries the predicted
class and its probability, all class probabilities, a JSONB snapshot of the features it was
scored on and the market regime. Rows are keyed by (exchange, symbol, tf, ts, model_id):
re-scoring the same bar is a no-op.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import numpy as np
import pandas as pd

from ats_pipelines.training.config import ModelScope
from ats_pipelines.training.dataset import CLASSES
from ats_pipelines.training.registry import LoadedModel


@dataclass
class LatestFeatures:
    """One row per entity: ``entities`` has exchange, symbol and ts (bar open time, UTC)."""

    entities: pd.DataFrame
    X: pd.DataFrame
    fetch_ms: float


class OnlineFeatureSource(Protocol):
    def latest(self, scope: ModelScope, features: list[str]) -> LatestFeatures:
        """The newest closed bar's features of every symbol of ``scope``."""
        ...


def market_regime(
    momentum: float,
    volatility: float | None,
    momentum_threshold: float,
    volatility_high: float | None,
) -> str:
    """``volatile`` above the training window's 80th volatility percentile, else the trend."""
    if (
        volatility is not None
        and volatility_high is not None
        and not math.isnan(volatility)
        and volatility > volatility_high
    ):
        return "volatile"
    if math.isnan(momentum):
        return "unknown"
    if momentum > momentum_threshold:
        return "trend_up"
    if momentum < -momentum_threshold:
        return "trend_down"
    return "range"


def _volatility_high(model: LoadedModel, feature: str | None) -> float | None:
    spec = model.drift_reference.get("features", {}).get(feature or "")
    edges = spec["edges"] if spec else []
    return float(edges[int(len(edges) * 0.8)]) if len(edges) >= 5 else None


def _snapshot(row: pd.Series) -> str:
    return json.dumps(
        {
            str(k): (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
            for k, v in row.items()
        }
    )


def score(
    model: LoadedModel, latest: LatestFeatures, scope: ModelScope, momentum_threshold: float
) -> list[dict[str, Any]]:
    """``signals`` rows for every entity with a complete timestamp (features may be null:
    LightGBM routes missing values; the snapshot records them as null)."""
    started = time.perf_counter()
    proba = model.predict_proba(latest.X)
    latency = latest.fetch_ms + (time.perf_counter() - started) * 1000.0
    pred = proba.argmax(axis=1)
    vol_high = _volatility_high(model, scope.volatility_feature)
    rows = []
    for i in range(len(latest.X)):
        features = latest.X.iloc[i]
        momentum = float(features.get(scope.momentum_feature, np.nan))
        volatility = (
            float(features[scope.volatility_feature])
            if scope.volatility_feature in features.index
            else None
        )
        ent = latest.entities.iloc[i]
        rows.append(
            {
                "ts": pd.Timestamp(ent["ts"]).to_pydatetime(),
                "exchange": str(ent["exchange"]),
                "symbol": str(ent["symbol"]),
                "tf": scope.timeframe,
                "model_id": model.model_id,
                "pred": CLASSES[int(pred[i])],
                "proba": float(proba[i, pred[i]]),
                "probas": json.dumps(dict(zip(CLASSES, map(float, proba[i]), strict=True))),
                "features": _snapshot(features),
                "latency_ms": float(latency),
                "market_regime": market_regime(momentum, volatility, momentum_threshold, vol_high),
            }
        )
    return rows


async def write_signals(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the rows; a bar already scored by the model is left as it is. Returns inserted."""
    if not rows:
        return 0
    cols = (
        "ts",
        "exchange",
        "symbol",
        "tf",
        "model_id",
        "pred",
        "proba",
        "probas",
        "features",
        "latency_ms",
        "market_regime",
    )
    inserted = await conn.fetchval(
        """
        WITH ins AS (
            INSERT INTO signals.signals (ts, exchange, symbol, tf, model_id, pred, proba, probas,
                                         features, latency_ms, market_regime)
            SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[],
                                 $5::text[], $6::text[], $7::float8[], $8::jsonb[],
                                 $9::jsonb[], $10::float8[], $11::text[])
            ON CONFLICT (exchange, symbol, tf, ts, model_id) DO NOTHING
            RETURNING 1
        ) SELECT count(*) FROM ins
        """,
        *[[r[c] for r in rows] for c in cols],
    )
    return int(inserted or 0)


async def latest_signal_ts(conn: asyncpg.Connection, model_id: str) -> datetime | None:
    return await conn.fetchval("SELECT max(ts) FROM signals.signals WHERE model_id = $1", model_id)
