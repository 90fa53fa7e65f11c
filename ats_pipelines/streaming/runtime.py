"""The interpreter settings a latency-critical process runs under while it streams.

Measured at 10,000 trades/s (one shard, six symbols), before these: full garbage collections of
140-270 ms every few seconds, young collections of up to 80 ms, and a bar thread waiting up to
5 ms for the GIL per database reply — each one a stall of every symbol, and most of the p99.

* **Frozen start-up heap.** Everything imported and built before streaming starts (ccxt's
  exchange classes and markets, Arrow and polars internals: ~400k tracked objects) moves to the
  permanent generation (:func:`gc.freeze`): no collection scans it again.
* **Paced collections.** ccxt keeps each symbol's last ``tradesLimit`` trades, so every
  arriving trade (a few dicts) frees an older one. CPython counts a freed object against the
  young generation's allocation count whatever generation it lived in, so the count that
  triggers a young collection hardly moves while the young generation itself grows to ~100k
  objects, and the collection that finally runs takes tens of milliseconds. Here automatic
  collection is off while streaming and :class:`GcPacer` collects on a clock instead: the young
  generation every ``young_s``, the middle one every ``middle_every`` young passes, everything
  every ``full_s``. Each pass is short because it is frequent; the pause of every pass is kept
  for the stats.
* **Short GIL switch interval.** The bar lane's thread (``committer``) is woken by each
  database reply while the ingest loop runs Python; at the default 5 ms interval that wait was
  most of a commit's latency.

Everything is restored when streaming stops, so a host process (Dagster, pytest) gets its own
settings back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

SWITCH_INTERVAL_S = 0.0005


@dataclass
class GcPacer:
    """Collects on a clock while automatic collection is off (see the module docstring)."""

    young_s: float = 0.05
    middle_every: int = 600  # 30 s
    full_s: float = 300.0
    passes: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})
    max_pause_s: dict[int, float] = field(default_factory=lambda: {0: 0.0, 1: 0.0, 2: 0.0})
    found: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})

    def collect(self, generation: int) -> float:
        started = time.perf_counter()
        found = gc.collect(generation)
        pause = time.perf_counter() - started
        self.found[generation] += found
        self.passes[generation] += 1
        self.max_pause_s[generation] = max(self.max_pause_s[generation], pause)
        return pause

    async def run(self) -> None:
        young = 0
        next_full = time.monotonic() + self.full_s
        while True:
            await asyncio.sleep(self.young_s)
            young += 1
            if time.monotonic() >= next_full:
                self.collect(2)
                next_full = time.monotonic() + self.full_s
            elif young % self.middle_every == 0:
                self.collect(1)
            else:
                self.collect(0)

    def stats(self) -> dict[str, object]:
        return {
            "passes": dict(self.passes),
            "max_pause_ms": {g: round(s * 1000, 2) for g, s in self.max_pause_s.items()},
            "unreachable": dict(self.found),
        }


@contextlib.contextmanager
def latency_tuning() -> Iterator[None]:
    """The switch interval now; :func:`freeze_heap` once started; all undone on exit."""
    interval = sys.getswitchinterval()
    enabled = gc.isenabled()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
        sys.setswitchinterval(interval)


def freeze_heap() -> None:
    """Collect once, move every object alive to the permanent generation, and hand collection
    to a :class:`GcPacer` (whose task the caller runs)."""
    gc.collect()
    gc.freeze()
    gc.disable()
