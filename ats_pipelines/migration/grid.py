"""Missing-timestamp report of a bar series against its timeframe's grid, built while streaming.

Timestamps arrive sorted and unique (after de-duplication). Each is floored to its bucket, so
funding rates stamped a few ms after the hour still count as on the grid for gap-finding,
while the off-grid count tells that they were not exactly aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ats_pipelines.lib.timeframes import floor_array, parse_timeframe

MAX_GAPS_LISTED = 20


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class GridTracker:
    timeframe: str
    previous: int | None = None  # bucket index of the last timestamp seen
    previous_floor: int = 0
    first: int | None = None
    rows: int = 0
    off_grid: int = 0
    missing: int = 0
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (missing, after, before)

    def _buckets(self, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tf = parse_timeframe(self.timeframe)
        floored = floor_array(ts_ms, tf)
        if tf.ms is None:
            months = floored.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
            return floored, months // tf.count
        return floored, (floored - tf.offset_ms) // tf.ms

    def push(self, ts_us: np.ndarray) -> None:
        if len(ts_us) == 0:
            return
        ts_ms = ts_us // 1000
        floored, buckets = self._buckets(ts_ms)
        self.off_grid += int(np.count_nonzero(floored != ts_ms) + np.count_nonzero(ts_us % 1000))
        self.rows += len(ts_us)
        if self.first is None:
            self.first = int(floored[0])
        if self.previous is None:
            chained, times = buckets, floored
        else:
            chained = np.concatenate(([self.previous], buckets))
            times = np.concatenate(([self.previous_floor], floored))
        steps = np.diff(chained)
        holes = np.nonzero(steps > 1)[0]
        if len(holes):
            self.missing += int((steps[holes] - 1).sum())
            for i in holes:
                self.gaps.append((int(steps[i] - 1), int(times[i]), int(times[i + 1])))
            self.gaps.sort(key=lambda g: -g[0])
            del self.gaps[MAX_GAPS_LISTED:]
        self.previous = int(buckets[-1])
        self.previous_floor = int(floored[-1])

    def report(self) -> dict[str, Any]:
        expected = self.rows + self.missing
        return {
            "timeframe": self.timeframe,
            "rows": self.rows,
            "expected_on_grid": expected,
            "missing": self.missing,
            "completeness": round(self.rows / expected, 6) if expected else None,
            "off_grid_rows": self.off_grid,
            "largest_gaps": [
                {"missing": n, "after": _iso(a), "before": _iso(b)} for n, a, b in self.gaps
            ],
        }


@dataclass
class SpacingTracker:
    """How far apart a file's own timestamps are: the most common step between consecutive
    distinct times, counted before validation, so that a file whose name lies about its
    timeframe (1-minute rows in a ``-1h`` file) is told apart from one with a few bad rows."""

    steps: dict[int, int] = field(default_factory=dict)  # step in µs -> how often
    last: int | None = None

    def push(self, ts_us: np.ndarray) -> None:
        values = np.unique(ts_us)
        if self.last is not None and values.size and self.last < values[0]:
            values = np.concatenate(([self.last], values))
        if values.size:
            self.last = int(values[-1])
        steps, counts = np.unique(np.diff(values), return_counts=True)
        for step, count in zip(steps.tolist(), counts.tolist(), strict=True):
            self.steps[step] = self.steps.get(step, 0) + count

    def dominant_ms(self) -> int | None:
        """The most common step in ms (the smaller one on a tie), or None below two times."""
        if not self.steps:
            return None
        step = min(self.steps, key=lambda s: (-self.steps[s], s))
        return step // 1000
