"""Kline faults for gap and repair tests, the demo and the benchmark.

:class:`KlineFaults` wraps one symbol's market source: it withholds 1-minute klines of chosen
minutes (a gap in the exchange's answers, healed by ``heal``) or serves them corrupted. The
emulator's connection-level fault set (:mod:`ats_pipelines.emulator.faults`) has no kline gaps;
this is that missing piece, kept next to it. Run an emulator for synchronous callers with
:func:`ats_pipelines.emulator.testing.emulator_in_thread`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ats_pipelines.emulator.model import KlineRow
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.source import MarketSource


def _ms(moment: datetime | int) -> int:
    return moment if isinstance(moment, int) else int(moment.timestamp() * 1000)


class KlineFaults:
    """A market source serving one symbol's 1m klines with minutes withheld or corrupted.

    Withheld minutes are skipped the way an exchange skips minutes it has no candle for: a page
    still holds up to ``limit`` rows (the next ones). Changes are swapped in whole, so the
    emulator thread never sees a half-updated set.
    """

    def __init__(self, inner: MarketSource, symbol_id: str) -> None:
        self.inner = inner
        self.symbol_id = symbol_id
        self.withheld: frozenset[int] = frozenset()
        self.corrupt: Mapping[int, Mapping[str, str]] = {}
        self.served_withheld = 0

    def withhold(self, minutes: Iterable[datetime | int]) -> None:
        self.withheld = self.withheld | {_ms(m) for m in minutes}

    def heal(self, minutes: Iterable[datetime | int] | None = None) -> None:
        """Serve withheld minutes again (all of them by default)."""
        self.withheld = (
            frozenset() if minutes is None else self.withheld - {_ms(m) for m in minutes}
        )

    def corrupt_minute(self, minute: datetime | int, **fields: str) -> None:
        """Serve this minute's kline with ``fields`` replaced (e.g. ``high="0.1"``)."""
        self.corrupt = {**self.corrupt, _ms(minute): dict(fields)}

    def klines(
        self,
        symbol_id: str,
        interval: str,
        start: int | None,
        end: int | None,
        limit: int,
        now: int,
    ) -> list[KlineRow]:
        withheld, corrupt = self.withheld, self.corrupt
        if symbol_id != self.symbol_id or interval != "1m" or not (withheld or corrupt):
            return self.inner.klines(symbol_id, interval, start, end, limit, now)
        rows = self.inner.klines(symbol_id, interval, start, end, limit + len(withheld), now)
        kept = [r for r in rows if r.open_time not in withheld]
        self.served_withheld += len(rows) - len(kept)
        kept = kept[:limit] if start is not None else kept[-limit:]
        return [r._replace(**corrupt[r.open_time]) if r.open_time in corrupt else r for r in kept]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install_kline_faults(emulator: Emulator, symbol_id: str) -> KlineFaults:
    """Put a :class:`KlineFaults` in front of ``symbol_id``'s source (REST and streams)."""
    current = emulator.sources[symbol_id]
    faults = current if isinstance(current, KlineFaults) else KlineFaults(current, symbol_id)
    emulator.sources[symbol_id] = faults  # type: ignore[assignment]
    return faults
