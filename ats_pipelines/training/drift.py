"""Feature drift: population stability index (PSI) of recent features vs the training window.

At training time :func:`reference` stores, per feature, the decile edges of the training
distribution and the share of rows in each bin (plus the share of missing values) with the
model artifact. Later :func:`psi` bins recent rows on the same edges:

    PSI = sum over bins of (recent - expected) * ln(recent / expected)

Common reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FLOOR = 1e-4  # an empty bin counts as this share (ln(0) is undefined)
MAX_REFERENCE_ROWS = 200_000


def _shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    """Shares of each inner bin, then of missing values."""
    finite = ~np.isnan(values)
    counts = np.bincount(
        np.searchsorted(edges, values[finite], side="right"), minlength=len(edges) + 1
    )
    total = max(1, len(values))
    return [float(c / total) for c in counts] + [float((~finite).sum() / total)]


def reference(X: pd.DataFrame, bins: int = 10, seed: int = 0) -> dict[str, Any]:
    """Bin edges (deciles) and bin shares of every feature of the training window."""
    if len(X) > MAX_REFERENCE_ROWS:
        X = X.sample(MAX_REFERENCE_ROWS, random_state=seed)
    out: dict[str, Any] = {"bins": bins, "rows": len(X), "features": {}}
    for name in X.columns:
        values = X[name].to_numpy(np.float64)
        finite = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
            if len(finite)
            else np.array([])
        )
        out["features"][str(name)] = {"edges": edges.tolist(), "shares": _shares(values, edges)}
    return out


def psi_one(expected: list[float], actual: list[float]) -> float:
    e = np.maximum(np.asarray(expected), FLOOR)
    a = np.maximum(np.asarray(actual), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReport:
    psi: dict[str, float]  # per feature
    missing: list[str]  # reference features absent from the recent rows
    rows: int
    threshold: float

    @property
    def max_psi(self) -> float:
        return max(self.psi.values(), default=0.0)

    @property
    def drifted(self) -> list[str]:
        return sorted(
            (f for f, v in self.psi.items() if v > self.threshold), key=lambda f: -self.psi[f]
        )

    @property
    def alarm(self) -> bool:
        return bool(self.drifted)


def psi(ref: dict[str, Any], recent: pd.DataFrame, threshold: float = 0.25) -> DriftReport:
    """PSI of every reference feature on ``recent`` rows."""
    values: dict[str, float] = {}
    missing = []
    for name, spec in ref["features"].items():
        if name not in recent.columns:
            missing.append(name)
            continue
        edges = np.asarray(spec["edges"], dtype=np.float64)
        actual = _shares(recent[name].to_numpy(np.float64), edges)
        values[name] = psi_one(spec["shares"], actual)
    return DriftReport(psi=values, missing=missing, rows=len(recent), threshold=threshold)
