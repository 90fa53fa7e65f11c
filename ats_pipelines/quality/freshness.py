"""Freshness of the streamed tables, from the stream's heartbeats and the bars' timestamps.

Per streamed (exchange, symbol): the shard streaming it must have beaten recently
(``ops.stream_heartbeats.last_beat``), and its newest closed 1m bar must be recent. A quiet
market is not stale: when the symbol's newest stored trade precedes the close of its newest bar,
there was nothing to build a newer bar from. Rows' timestamps are exchange time; "now" is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ats_pipelines.quality.policy import QualityPolicy

MINUTE = timedelta(minutes=1)
_STREAMED = """
SELECT h.shard, h.exchange, s.symbol, h.last_beat,
       (SELECT max(c.ts) FROM market.candles c
         WHERE c.exchange = h.exchange AND c.symbol = s.symbol AND c.timeframe = '1m') AS last_bar,
       (SELECT max(t.ts) FROM market.trades t
         WHERE t.exchange = h.exchange AND t.symbol = s.symbol) AS last_trade
FROM ops.stream_heartbeats h CROSS JOIN LATERAL unnest(h.symbols) AS s(symbol)
ORDER BY h.exchange, s.symbol, h.shard
"""


@dataclass(frozen=True)
class SymbolFreshness:
    shard: str
    exchange: str
    symbol: str
    beat_age_s: float
    last_bar: datetime | None
    bar_lag_s: float | None  # now - close of the newest bar
    last_trade: datetime | None
    fresh: bool
    rule: str | None
    reason: str


@dataclass(frozen=True)
class StreamFreshness:
    passed: bool
    symbols: list[SymbolFreshness]
    summary: str

    @property
    def stale(self) -> list[SymbolFreshness]:
        return [s for s in self.symbols if not s.fresh]


def judge(
    shard: str,
    exchange: str,
    symbol: str,
    last_beat: datetime,
    last_bar: datetime | None,
    last_trade: datetime | None,
    *,
    now: datetime,
    policy: QualityPolicy,
) -> SymbolFreshness:
    """The verdict for one streamed symbol (pure: tests feed it any clock)."""
    beat_age = (now - last_beat).total_seconds()
    lag = None if last_bar is None else (now - (last_bar + MINUTE)).total_seconds()
    quiet = last_bar is not None and (last_trade is None or last_trade < last_bar + MINUTE)

    def verdict(fresh: bool, rule: str | None, reason: str) -> SymbolFreshness:
        return SymbolFreshness(
            shard, exchange, symbol, beat_age, last_bar, lag, last_trade, fresh, rule, reason
        )

    limit_beat = policy.max_heartbeat_age.total_seconds()
    limit_bar = policy.max_bar_lag.total_seconds()
    if beat_age > limit_beat:
        return verdict(
            False,
            "freshness.heartbeat",
            f"shard {shard} last beat {beat_age:.0f}s ago (limit {limit_beat:.0f}s)",
        )
    if last_bar is None:
        return verdict(False, "freshness.bars", "the stream has written no 1m bar yet")
    if lag is not None and lag > limit_bar:
        if quiet:
            return verdict(
                True, None, f"quiet market: no trade since the last bar ({lag:.0f}s ago)"
            )
        return verdict(
            False,
            "freshness.bars",
            f"newest bar closed {lag:.0f}s ago (limit "
            f"{limit_bar:.0f}s) though trades arrived since",
        )
    return verdict(True, None, "fresh")


async def stream_freshness(
    conn: asyncpg.Connection, *, now: datetime, policy: QualityPolicy
) -> StreamFreshness:
    rows = await conn.fetch(_STREAMED)
    if not rows:
        return StreamFreshness(False, [], "no streaming shard has sent a heartbeat")
    verdicts = [
        judge(
            r["shard"],
            r["exchange"],
            r["symbol"],
            r["last_beat"],
            r["last_bar"],
            r["last_trade"],
            now=now,
            policy=policy,
        )
        for r in rows
    ]
    stale = [v for v in verdicts if not v.fresh]
    summary = (
        f"{len(verdicts)} streamed symbol(s) fresh"
        if not stale
        else "stale: " + "; ".join(f"{v.exchange} {v.symbol}: {v.reason}" for v in stale)
    )
    return StreamFreshness(not stale, verdicts, summary)
