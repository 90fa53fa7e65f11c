"""Typed metadata of bars on their way to the database, and of their commits.

A bar batch carries one :class:`BarsWritten` (in ``Batch.meta``, memory only); when the bar
lane commits it, the emitter turns each :class:`BarTiming` into a :class:`BarCommit` and hands
the list to every ``OnBarsCommitted`` listener (latency reports today; bar-commit events for
event-driven analyzers are meant to subscribe here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BarTiming:
    """When one final bar was received and closed (wall seconds); ``final_at_ms`` is the
    exchange time it became final (bucket end + grace)."""

    symbol: str
    timeframe: str
    ts: int
    final_at_ms: int
    received: float
    closed: float


@dataclass(frozen=True, slots=True)
class BarsWritten:
    """What a bar batch means once committed: ``symbol``'s bars opening before
    ``closed_before`` are final and stored; ``timings`` per bar in the batch."""

    symbol: str
    closed_before: int
    timings: tuple[BarTiming, ...]


@dataclass(frozen=True, slots=True)
class BarCommit:
    """One committed bar: its timing and the wall time of the commit (seconds)."""

    timing: BarTiming
    committed: float

    @property
    def symbol(self) -> str:
        return self.timing.symbol

    @property
    def timeframe(self) -> str:
        return self.timing.timeframe

    @property
    def ts(self) -> int:
        return self.timing.ts

    @property
    def final_at_ms(self) -> int:
        return self.timing.final_at_ms

    @property
    def received(self) -> float:
        return self.timing.received

    @property
    def closed(self) -> float:
        return self.timing.closed


OnBarsCommitted = Callable[[list[BarCommit]], None]
