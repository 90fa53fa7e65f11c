"""Heartbeats (``ops.stream_heartbeats``) and the freshness verdict Dagster shows.

Each shard upserts its row every few seconds with its symbols, the exchange time of its latest
trade and a small stats document. A shard is *fresh* when its last beat is recent and, if it
has ever seen a trade, that trade is recent too (a stream that beats but receives nothing is
stale as well). The trade's age is the service's own measure (``stats.last_trade_age_s``, on
its exchange-clock estimate), so an exchange whose clock differs from ours is judged fairly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

DEFAULT_MAX_BEAT_AGE = timedelta(seconds=60)
DEFAULT_MAX_TRADE_AGE = timedelta(minutes=10)

_UPSERT = """
INSERT INTO ops.stream_heartbeats (shard, exchange, symbols, pid, host, started_at, last_beat,
                                   last_trade_ts, stats)
VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8::jsonb)
ON CONFLICT (shard) DO UPDATE SET exchange = EXCLUDED.exchange, symbols = EXCLUDED.symbols,
    pid = EXCLUDED.pid, host = EXCLUDED.host, started_at = EXCLUDED.started_at,
    last_beat = EXCLUDED.last_beat, last_trade_ts = EXCLUDED.last_trade_ts,
    stats = EXCLUDED.stats
"""


async def beat(
    conn: asyncpg.Connection,
    *,
    shard: str,
    exchange: str,
    symbols: Sequence[str],
    host: str,
    started_at: datetime,
    last_trade_ts: datetime | None,
    stats: dict[str, Any],
) -> None:
    await conn.execute(
        _UPSERT,
        shard,
        exchange,
        list(symbols),
        os.getpid(),
        host,
        started_at,
        last_trade_ts,
        json.dumps(stats, default=str),
    )


@dataclass(frozen=True)
class Heartbeat:
    shard: str
    exchange: str
    symbols: list[str]
    started_at: datetime
    last_beat: datetime
    last_trade_ts: datetime | None
    stats: dict[str, Any]


async def read_heartbeats(conn: asyncpg.Connection) -> list[Heartbeat]:
    rows = await conn.fetch(
        "SELECT shard, exchange, symbols, started_at, last_beat, last_trade_ts, stats::text "
        "AS stats FROM ops.stream_heartbeats ORDER BY shard"
    )
    return [
        Heartbeat(
            r["shard"],
            r["exchange"],
            list(r["symbols"]),
            r["started_at"],
            r["last_beat"],
            r["last_trade_ts"],
            json.loads(r["stats"] or "{}"),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ShardFreshness:
    shard: str
    fresh: bool
    beat_age_s: float
    trade_age_s: float | None
    reason: str


@dataclass(frozen=True)
class Freshness:
    passed: bool
    shards: list[ShardFreshness]
    summary: str

    def metadata(self) -> dict[str, Any]:
        return {
            "shards": len(self.shards),
            "stale_shards": [s.shard for s in self.shards if not s.fresh],
            "max_beat_age_s": max((s.beat_age_s for s in self.shards), default=None),
            "detail": {s.shard: s.reason for s in self.shards},
        }


def freshness(
    heartbeats: Sequence[Heartbeat],
    now: datetime | None = None,
    *,
    max_beat_age: timedelta = DEFAULT_MAX_BEAT_AGE,
    max_trade_age: timedelta = DEFAULT_MAX_TRADE_AGE,
    shards: Sequence[str] | None = None,
) -> Freshness:
    """The verdict over every shard (or the named ones); no heartbeat at all is stale."""
    now = now or datetime.now(UTC)
    chosen = [h for h in heartbeats if shards is None or h.shard in shards]
    out: list[ShardFreshness] = []
    for h in chosen:
        beat_age = (now - h.last_beat).total_seconds()
        reported = h.stats.get("last_trade_age_s")
        trade_age = float(reported) + beat_age if reported is not None else None
        if beat_age > max_beat_age.total_seconds():
            out.append(
                ShardFreshness(
                    h.shard,
                    False,
                    beat_age,
                    trade_age,
                    f"last heartbeat {beat_age:.0f}s ago "
                    f"(limit {max_beat_age.total_seconds():.0f}s)",
                )
            )
        elif trade_age is not None and trade_age > max_trade_age.total_seconds():
            out.append(
                ShardFreshness(
                    h.shard,
                    False,
                    beat_age,
                    trade_age,
                    f"latest trade {trade_age:.0f}s ago "
                    f"(limit {max_trade_age.total_seconds():.0f}s)",
                )
            )
        else:
            out.append(ShardFreshness(h.shard, True, beat_age, trade_age, "fresh"))
    missing = [s for s in (shards or []) if s not in {h.shard for h in chosen}]
    for shard in missing:
        out.append(ShardFreshness(shard, False, float("inf"), None, "no heartbeat"))
    if not out:
        return Freshness(False, [], "no streaming shard has ever sent a heartbeat")
    stale = [s for s in out if not s.fresh]
    summary = (
        f"{len(out) - len(stale)}/{len(out)} shards fresh"
        if not stale
        else "stale: " + "; ".join(f"{s.shard}: {s.reason}" for s in stale)
    )
    return Freshness(not stale, out, summary)
