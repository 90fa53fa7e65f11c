"""Closed bars of one timeframe, read from wherever the market-data domain keeps them.

Where bars of a timeframe live is :func:`ats_pipelines.warehouse.bar_location.bars_relation`
(the same answer on every edition). A bar is *closed* when its
interval is over, ``ts + timeframe <= now`` (the rollups only ever write finished buckets; the
1m ingestion and the stream may hold the open bar, which this filter leaves out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.signals.trend import BarArrays
from ats_pipelines.warehouse.bar_location import bars_relation
from ats_pipelines.warehouse.rollups import rollup_mode

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BarSource:
    """Where ``timeframe`` bars live: a relation holding only that timeframe's bars."""

    timeframe: str
    relation: str

    def where(self, first_param: int) -> str:
        """``exchange = $n AND symbol = $n+1``."""
        return f"exchange = ${first_param} AND symbol = ${first_param + 1}"

    def args(self, exchange: str, symbol: str) -> list[str]:
        return [exchange, symbol]


async def bar_source(
    conn: asyncpg.Connection, timeframe: str, mode: str | None = None
) -> BarSource:
    relation = bars_relation(timeframe, mode or await rollup_mode(conn))
    return BarSource(timeframe, relation)


async def db_now(conn: asyncpg.Connection) -> datetime:
    now = await conn.fetchval("SELECT now()")
    assert isinstance(now, datetime)
    return now


def closed_cutoff(now: datetime, timeframe: str) -> datetime:
    """The latest open time of a closed bar at ``now``: ``ts <= now - timeframe``."""
    return now - to_timedelta(timeframe)


async def newest_closed(
    conn: asyncpg.Connection, source: BarSource, exchange: str, symbol: str, cutoff: datetime
) -> datetime | None:
    n = 2
    sql = (
        f"SELECT max(ts) FROM {source.relation} "  # noqa: S608 - relation quoted
        f"WHERE {source.where(1)} AND ts <= ${n + 1}"
    )
    return await conn.fetchval(sql, *source.args(exchange, symbol), cutoff)


async def read_bars(
    conn: asyncpg.Connection,
    source: BarSource,
    exchange: str,
    symbol: str,
    *,
    after: datetime | None,
    cutoff: datetime,
    history: int,
    limit: int | None = None,
) -> tuple[BarArrays, int]:
    """``history`` bars opened at or before ``after`` and the closed bars after it (at most
    ``limit``), in time order; returns the bars and how many of them are new."""
    n = 2
    after = after or FAR_PAST
    cols = "(extract(epoch FROM ts) * 1000)::bigint AS ms, high, low, close"
    where = source.where(1)
    sql = (
        f"(SELECT {cols}, false AS new FROM {source.relation} "  # noqa: S608 - relation quoted
        f" WHERE {where} AND ts <= ${n + 1} ORDER BY ts DESC LIMIT ${n + 3})"
        f" UNION ALL "
        f"(SELECT {cols}, true AS new FROM {source.relation} "
        f" WHERE {where} AND ts > ${n + 1} AND ts <= ${n + 2} ORDER BY ts LIMIT ${n + 4})"
    )
    rows = await conn.fetch(sql, *source.args(exchange, symbol), after, cutoff, history, limit)
    rows = sorted(rows, key=lambda r: r[0]) if rows else rows
    if not rows:
        empty = np.empty(0)
        return BarArrays(np.empty(0, dtype=np.int64), empty, empty, empty), 0
    ms = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    prices = np.array([(r[1], r[2], r[3]) for r in rows], dtype=np.float64)
    new = sum(1 for r in rows if r[4])
    return BarArrays(ms, prices[:, 0].copy(), prices[:, 1].copy(), prices[:, 2].copy()), new


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def datetime_to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
