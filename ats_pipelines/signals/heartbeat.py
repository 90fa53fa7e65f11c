"""The live signal service's heartbeat (``signals.service_heartbeats``) and its freshness.

A service beats every few seconds; it is *fresh* when its last beat is younger than
``max_age``. No row at all is stale too: the check exists to say the live path is not running.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

DEFAULT_MAX_AGE = timedelta(seconds=60)

_UPSERT = """
INSERT INTO signals.service_heartbeats (service_id, analyzer_id, coordinator_id, exchange,
    symbols, timeframes, pid, host, started_at, last_beat, stats)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10::jsonb)
ON CONFLICT (service_id) DO UPDATE SET analyzer_id = EXCLUDED.analyzer_id,
    coordinator_id = EXCLUDED.coordinator_id, exchange = EXCLUDED.exchange,
    symbols = EXCLUDED.symbols, timeframes = EXCLUDED.timeframes, pid = EXCLUDED.pid,
    host = EXCLUDED.host, started_at = EXCLUDED.started_at, last_beat = EXCLUDED.last_beat,
    stats = EXCLUDED.stats
"""


@dataclass(frozen=True)
class ServiceIdentity:
    service_id: str
    analyzer_id: str
    coordinator_id: str
    exchange: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    started_at: datetime


async def beat(conn: asyncpg.Connection, me: ServiceIdentity, stats: dict[str, Any]) -> None:
    await conn.execute(
        _UPSERT,
        me.service_id,
        me.analyzer_id,
        me.coordinator_id,
        me.exchange,
        list(me.symbols),
        list(me.timeframes),
        os.getpid(),
        socket.gethostname(),
        me.started_at,
        json.dumps(stats, default=str),
    )


@dataclass(frozen=True)
class ServiceBeat:
    service_id: str
    analyzer_id: str
    last_beat: datetime
    age_s: float
    stats: dict[str, Any]


async def read_beats(conn: asyncpg.Connection) -> list[ServiceBeat]:
    rows = await conn.fetch(
        "SELECT service_id, analyzer_id, last_beat, extract(epoch FROM now() - last_beat) "
        "AS age_s, stats::text AS stats FROM signals.service_heartbeats ORDER BY service_id"
    )
    return [
        ServiceBeat(
            r["service_id"],
            r["analyzer_id"],
            r["last_beat"],
            float(r["age_s"]),
            json.loads(r["stats"] or "{}"),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ServiceFreshness:
    passed: bool
    stale: list[str]
    ages_s: dict[str, float]
    summary: str


def service_freshness(
    beats: Sequence[ServiceBeat],
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    analyzer_id: str | None = None,
) -> ServiceFreshness:
    """Fresh when every service (of ``analyzer_id``, if given) beat within ``max_age`` and at
    least one exists."""
    mine = [b for b in beats if analyzer_id is None or b.analyzer_id == analyzer_id]
    ages = {b.service_id: round(b.age_s, 1) for b in mine}
    stale = sorted(b.service_id for b in mine if b.age_s > max_age.total_seconds())
    if not mine:
        who = f" of analyzer {analyzer_id}" if analyzer_id else ""
        return ServiceFreshness(False, [], {}, f"no live signal service{who} has ever beaten")
    if stale:
        detail = ", ".join(f"{s} {ages[s]:.0f}s ago" for s in stale)
        summary = f"stale signal service: {detail} (limit {max_age.total_seconds():.0f}s)"
        return ServiceFreshness(False, stale, ages, summary)
    return ServiceFreshness(True, [], ages, f"{len(mine)} signal service(s) beating")
