"""Triple-barrier outcomes: what a long position opened at a bar's close would have done.

Entry at the close of bar ``i``; over the next ``horizon`` bars the position exits at the first
touch of the take-profit (``entry * (1 + reward * risk)``) or the stop (``entry * (1 - risk)``),
or at the last close if neither is touched. The realised reward-to-risk is the exit return in
units of the risk (``+reward``, ``-1``, or in between); a short earns the negative. A bar that
touches both barriers counts as the stop (we cannot know which came first: be conservative).

Labels: BUY when the take-profit is hit first, SELL when the stop is, HOLD otherwise — the same
barriers read from the short side, so the classes are symmetric when ``reward == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ats_pipelines.training.dataset import BUY, HOLD, SELL


@dataclass(frozen=True)
class Barriers:
    """The label definition of a model scope."""

    horizon: int = 12  # bars
    risk: float = 0.01  # stop distance as a fraction of the entry price
    reward: float = 1.0  # take-profit distance in multiples of the risk

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"label horizon {self.horizon} must be at least one bar")
        if not 0 < self.risk < 1 or self.reward <= 0:
            raise ValueError(f"barriers risk={self.risk} reward={self.reward} must be positive")


@dataclass(frozen=True)
class Outcomes:
    label: np.ndarray  # int8 class codes; -1 where the horizon is not over yet
    realized_rr: np.ndarray  # long side; NaN where unknown
    exit_index: np.ndarray  # bar index the outcome is known at; -1 where unknown


def triple_barrier(
    close: np.ndarray, high: np.ndarray, low: np.ndarray, barriers: Barriers
) -> Outcomes:
    """Outcome of a long entry at every bar's close (vectorised over bars, looped over the
    horizon)."""
    close, high, low = (np.asarray(a, dtype=np.float64) for a in (close, high, low))
    n, h = len(close), barriers.horizon
    label = np.full(n, -1, dtype=np.int8)
    rr = np.full(n, np.nan)
    exit_at = np.full(n, -1, dtype=np.int64)
    decided = np.zeros(n, dtype=bool)
    upper = close * (1 + barriers.reward * barriers.risk)
    lower = close * (1 - barriers.risk)
    for j in range(1, h + 1):
        idx = np.arange(n - j)  # entries that have a bar j ahead
        hi, lo = high[j:], low[j:]
        open_ = ~decided[idx]
        stop = open_ & (lo <= lower[idx])
        take = open_ & ~stop & (hi >= upper[idx])
        label[idx[stop]], rr[idx[stop]], exit_at[idx[stop]] = SELL, -1.0, idx[stop] + j
        label[idx[take]], rr[idx[take]] = BUY, barriers.reward
        exit_at[idx[take]] = idx[take] + j
        decided[idx[stop | take]] = True
    ends = np.arange(n - h)
    timed_out = ends[~decided[ends]]
    label[timed_out] = HOLD
    rr[timed_out] = (close[timed_out + h] / close[timed_out] - 1) / barriers.risk
    exit_at[timed_out] = timed_out + h
    return Outcomes(label=label, realized_rr=rr, exit_index=exit_at)
