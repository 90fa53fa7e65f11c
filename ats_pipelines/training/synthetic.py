"""Synthetic training sets: one with a planted, learnable signal and one of pure noise.

Used by the tests (the promotion gates must pass on the first and fail on the second), the
benchmark (a million rows) and as a named stand-in where no feature store is configured. Rows
are ``symbols x bars`` on a regular clock; labels follow the barrier convention of
:mod:`ats_pipelines.training.labels` (BUY earns ``+reward``, SELL ``-1`` for a long, HOLD a
small drift).

The planted signal is a non-linear function of a few features (a tree model finds it, the
momentum rule only partly), and ``momentum`` carries a weak share of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ats_pipelines.training.dataset import BUY, HOLD, SELL, TrainingSet

START = datetime(2024, 1, 1)


def make_training_set(
    rows: int = 20_000,
    features: int = 12,
    *,
    kind: str = "planted",
    seed: int = 0,
    symbols: int = 4,
    bar: timedelta = timedelta(hours=1),
    horizon: int = 6,
    reward: float = 1.0,
    strength: float = 1.0,
    dtype: type = np.float64,
    feature_service: str = "synthetic",
) -> TrainingSet:
    """``rows`` rows (rounded down to whole bars over ``symbols``) of ``features`` columns."""
    if kind not in ("planted", "noise"):
        raise ValueError(f"kind {kind!r}: use 'planted' or 'noise'")
    if features < 5:
        raise ValueError("make_training_set needs at least 5 features")
    rng = np.random.default_rng(seed)
    bars = max(1, rows // symbols)
    n = bars * symbols
    X = rng.standard_normal((n, features)).astype(dtype, copy=False)
    if kind == "planted":
        latent = strength * (
            0.9 * X[:, 0] + 0.6 * np.tanh(2 * X[:, 1]) * np.sign(X[:, 2]) + 0.5 * (X[:, 3] > 0.5)
        )
    else:
        latent = np.zeros(n)
    noisy = latent + rng.standard_normal(n)
    cut = np.quantile(noisy, [0.3, 0.7])
    y = np.where(noisy > cut[1], BUY, np.where(noisy < cut[0], SELL, HOLD)).astype(np.int8)
    momentum = (
        0.4 * latent / max(strength, 1e-9) if kind == "planted" else 0.0
    ) + rng.standard_normal(n)
    rr = np.where(y == BUY, reward, np.where(y == SELL, -1.0, rng.normal(0, 0.2, n)))
    columns = [f"f{i:02d}" for i in range(features - 1)] + ["momentum"]
    frame = pd.DataFrame(X[:, : features - 1], columns=pd.Index(columns[:-1]))
    frame["momentum"] = momentum.astype(dtype)
    clock = np.datetime64(START, "ns") + np.arange(bars) * np.timedelta64(bar, "ns")
    event_ts = np.repeat(clock, symbols)
    names = np.tile([f"SYN{i}/USDT" for i in range(symbols)], bars)
    return TrainingSet(
        X=frame,
        y=y,
        event_ts=event_ts,
        label_end_ts=event_ts + horizon * np.timedelta64(bar, "ns"),
        realized_rr=rr,
        entities=pd.DataFrame({"exchange": "synthetic", "symbol": names}),
        feature_service=feature_service,
    )
