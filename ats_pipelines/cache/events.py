"""Bar-commit events: the one contract between their publisher (the streaming service,
``streaming.events``) and their reader (the live signal service, ``signals.events``).

**Why a Redis Stream.** The project already runs its own Redis (``ats cache up``), and a
stream keeps its entries: a reader that reconnects goes on from the last id it saw and misses
nothing published meanwhile (Pub/Sub drops what nobody was listening to), and ``XREAD BLOCK``
wakes a reader within a round trip of an ``XADD`` — no polling. PostgreSQL ``LISTEN/NOTIFY``
would wake as fast but holds nothing for a reader that was away. The record of what was
analysed is not the stream but the database's watermarks (``signals.analyzer``): after a
longer downtime, or with Redis gone, the reader catches up from them; an event is a prompt to
look now, never the only way a bar gets analysed.

**What an event says.** Keys only: exchange, symbol, timeframe, the bar's open time, and the
wall times of the commit and of the send (for latency). The bar is read from the store as of
the event, so a reader never trusts a payload it did not read itself. One stream per
(exchange, timeframe), ``keys.bar_events_key``, so each timeframe's analyzer reads only its
own bars.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ats_pipelines.cache.keys import bar_events_key


@dataclass(frozen=True, slots=True)
class BarEvent:
    """One committed final bar: ``ts`` its open time (epoch ms), ``committed`` the commit's
    wall time and ``sent`` the publisher's (epoch seconds; ``sent`` is set by the publisher
    and splits the hop to the reader in two: the writer's side and Redis plus the reader's)."""

    exchange: str
    symbol: str
    timeframe: str
    ts: int
    committed: float
    sent: float | None = None

    @property
    def key(self) -> str:
        return bar_events_key(self.exchange, self.timeframe)

    def fields(self, sent: float | None = None) -> dict[str, str]:
        out = {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "ts": str(self.ts),
            "committed": repr(self.committed),
        }
        if sent is not None:
            out["sent"] = repr(sent)
        return out

    @classmethod
    def decode(cls, fields: Mapping[bytes, bytes]) -> BarEvent:
        """An entry's fields back to an event; ``ValueError`` naming what is wrong."""
        try:
            return cls(
                fields[b"exchange"].decode(),
                fields[b"symbol"].decode(),
                fields[b"timeframe"].decode(),
                int(fields[b"ts"]),
                float(fields[b"committed"]),
                float(fields[b"sent"]) if b"sent" in fields else None,
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"bar event {dict(fields)!r}: {exc!r}") from None
