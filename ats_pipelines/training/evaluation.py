"""Holdout metrics and the baselines every model is compared with.

Metrics: multi-class log-loss, one-vs-rest AUC (macro), precision/recall per class, the
confusion matrix, a reliability table, and the trading metric — hit rate and mean realised
reward-to-risk of the signals (BUY/SELL predictions) a model would have emitted.

Baselines: the class prior (training frequencies, always the majority class) and a momentum
rule (BUY above a momentum threshold, SELL below its negative, HOLD between; its probabilities
are the training class frequencies of each of those three buckets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ats_pipelines.training.dataset import CLASSES, DIRECTION, HOLD

EPS = 1e-15


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(y)), y], EPS, 1.0)
    return float(-np.mean(np.log(p)))


def auc_binary(target: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties; NaN when one class is absent."""
    pos = int(target.sum())
    neg = len(target) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[target].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_ovr(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present."""
    scores = [auc_binary(y == k, proba[:, k]) for k in range(len(CLASSES))]
    present = [s for s in scores if not np.isnan(s)]
    return float(np.mean(present)) if present else float("nan")


def confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """3x3 counts, rows = realised class, columns = predicted class."""
    k = len(CLASSES)
    return np.bincount(y.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)


def per_class(cm: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for k, name in enumerate(CLASSES):
        predicted, actual = cm[:, k].sum(), cm[k, :].sum()
        out[name] = {
            "precision": float(cm[k, k] / predicted) if predicted else 0.0,
            "recall": float(cm[k, k] / actual) if actual else 0.0,
            "support": int(actual),
        }
    return out


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Confidence of the predicted class vs how often it was right, per confidence bin."""
    conf = proba.max(axis=1)
    right = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "confidence": float(conf[mask].mean()),
                    "accuracy": float(right[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


@dataclass(frozen=True)
class Trading:
    signals: int
    hit_rate: float  # share of signals whose realised class equals the prediction
    mean_rr: float  # mean realised reward-to-risk per signal (0 when none)
    cumulative_rr: np.ndarray  # running sum over the signals, in time order

    def as_dict(self) -> dict[str, float]:
        return {
            "signals": self.signals,
            "hit_rate": self.hit_rate,
            "mean_rr": self.mean_rr,
            "total_rr": float(self.cumulative_rr[-1]) if self.signals else 0.0,
        }


def trading(y: np.ndarray, pred: np.ndarray, realized_rr: np.ndarray) -> Trading:
    """The signals a predictor emits (every BUY/SELL) and what they earned."""
    emitted = pred != HOLD
    n = int(emitted.sum())
    if not n:
        return Trading(0, 0.0, 0.0, np.zeros(0))
    earned = DIRECTION[pred[emitted]] * np.nan_to_num(realized_rr[emitted])
    return Trading(
        n, float((y[emitted] == pred[emitted]).mean()), float(earned.mean()), np.cumsum(earned)
    )


def evaluate(y: np.ndarray, proba: np.ndarray, realized_rr: np.ndarray) -> dict[str, Any]:
    """Every holdout metric of one predictor (JSON-ready)."""
    pred = proba.argmax(axis=1)
    cm = confusion(y, pred)
    return {
        "rows": len(y),
        "log_loss": log_loss(y, proba),
        "auc": auc_ovr(y, proba),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "per_class": per_class(cm),
        "confusion": cm.tolist(),
        "trading": trading(y, pred, realized_rr).as_dict(),
    }


@dataclass(frozen=True)
class ClassPrior:
    """Predicts the training class frequencies for every row."""

    prior: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> ClassPrior:
        counts = np.bincount(y, minlength=len(CLASSES)) + 1.0  # Laplace: no zero probability
        return cls(counts / counts.sum())

    def predict_proba(self, n: int) -> np.ndarray:
        return np.tile(self.prior, (n, 1))


@dataclass(frozen=True)
class MomentumRule:
    """BUY when momentum > threshold, SELL when < -threshold, else HOLD."""

    threshold: float
    bucket_proba: np.ndarray  # 3 buckets (SELL, HOLD, BUY) x 3 classes

    @staticmethod
    def bucket(momentum: np.ndarray, threshold: float) -> np.ndarray:
        m = np.nan_to_num(np.asarray(momentum, dtype=np.float64))
        return np.where(m > threshold, 2, np.where(m < -threshold, 0, 1)).astype(np.int64)

    @classmethod
    def fit(cls, momentum: np.ndarray, y: np.ndarray, quantile: float = 0.5) -> MomentumRule:
        """The threshold is the ``quantile`` of |momentum|: it signals on the stronger half."""
        threshold = float(np.nanquantile(np.abs(momentum), quantile)) if len(momentum) else 0.0
        buckets = cls.bucket(momentum, threshold)
        table = np.ones((3, len(CLASSES)))
        np.add.at(table, (buckets, y.astype(np.int64)), 1.0)
        return cls(threshold, table / table.sum(axis=1, keepdims=True))

    def predict_proba(self, momentum: np.ndarray) -> np.ndarray:
        return self.bucket_proba[self.bucket(momentum, self.threshold)]

    def predict(self, momentum: np.ndarray) -> np.ndarray:
        return self.bucket(momentum, self.threshold)


def evaluate_rule(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, realized_rr: np.ndarray
) -> dict[str, Any]:
    """Like :func:`evaluate` for a baseline whose signals are its own rule, not argmax."""
    out = evaluate(y, proba, realized_rr)
    cm = confusion(y, pred)
    out.update(
        per_class=per_class(cm),
        confusion=cm.tolist(),
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        trading=trading(y, pred, realized_rr).as_dict(),
    )
    return out
