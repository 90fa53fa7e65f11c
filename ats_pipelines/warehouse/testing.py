"""Emulator plumbing for market-data tests, the demo and the benchmark.

* :class:`EmulatorThread` runs an emulator on its own event loop in a background thread, so
  synchronous callers (``dg.materialize``, whose assets call ``asyncio.run``) can talk to it.
* :class:`KlineFaults` wraps one symbol's market source: it withholds 1-minute klines of chosen
  minutes (a gap in the exchange's answers, healed by ``heal``) or serves them corrupted. The
  emulator's own fault set has no kline gaps yet; this belongs there eventually.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from ats_pipelines.emulator.model import KlineRow
from ats_pipelines.emulator.server import Emulator, EmulatorConfig
from ats_pipelines.emulator.source import MarketSource


class EmulatorThread:
    """``with EmulatorThread(config) as emulator:`` — an emulator served from another thread."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="emulator", daemon=True)
        self.emulator: Emulator | None = None

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def __enter__(self) -> Emulator:
        self._thread.start()

        async def start() -> Emulator:
            emulator = Emulator(self.config)
            await emulator.start()
            return emulator

        emulator: Emulator = self._call(start())
        self.emulator = emulator
        return emulator

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.emulator is not None:
                self._call(self.emulator.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


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
