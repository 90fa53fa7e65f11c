"""What we asked the exchange for, what it said, and which minutes are still missing.

Every REST range we asked is logged in ``market.fetch_log``. A minute inside an asked range for
which the exchange returned no candle goes to ``market.empty_intervals`` with the number of
empty answers (``asks``). Real exchanges have quiet minutes without trades, but an exchange can
also be briefly behind or drop rows, so one empty answer is not believed: a minute counts as
*confirmed empty* after ``CONFIRM_AFTER`` empty answers (the backfill, then one repair), and is
never asked for again. A candle arriving later for a listed minute removes it from the list.

A minute of a window is then one of:

* present — a 1m candle is stored;
* confirmed empty — the exchange said "nothing" ``CONFIRM_AFTER`` times: not a gap;
* unconfirmed empty — asked, nothing returned once: a gap the repair asks about again;
* never asked — no logged fetch covers it: a gap;
* asked, absent — asked and answered, yet no candle (rejected by validation, or deleted): a gap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ats_pipelines.warehouse.intervals import MINUTE, Interval, floor_minute, minute_runs

CONFIRM_AFTER = 2
TIMEFRAME = "1m"

NEVER_ASKED = "never_asked"
UNCONFIRMED_EMPTY = "unconfirmed_empty"
ASKED_ABSENT = "asked_absent"


@dataclass(frozen=True)
class Gap:
    """Consecutive missing minutes sharing one reason."""

    interval: Interval
    reason: str


@dataclass
class GapReport:
    """Missing minutes of one symbol over a window (clipped to minutes that have closed)."""

    exchange: str
    symbol: str
    window: Interval
    expected_minutes: int
    present: int
    confirmed_empty: int
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missing_minutes(self) -> int:
        return sum(g.interval.minutes for g in self.gaps)

    @property
    def ok(self) -> bool:
        return not self.gaps

    def by_reason(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for gap in self.gaps:
            counts[gap.reason] += gap.interval.minutes
        return dict(counts)

    def missing_intervals(self) -> list[Interval]:
        """Missing minutes regardless of reason, adjacent gaps merged (what repair fetches)."""
        return minute_runs(
            g.interval.start + k * MINUTE for g in self.gaps for k in range(g.interval.minutes)
        )


async def server_now(conn: asyncpg.Connection) -> datetime:
    """The server's transaction time (the clock every ``ingested_at`` and check uses)."""
    now = await conn.fetchval("SELECT now()")
    assert isinstance(now, datetime)
    return now


async def record_fetch(
    conn: asyncpg.Connection, exchange: str, symbol: str, window: Interval, rows_returned: int
) -> None:
    """Log one asked range (asking the same range again refreshes its row)."""
    await conn.execute(
        "INSERT INTO market.fetch_log (exchange, symbol, timeframe, range_start, range_end, "
        "rows_returned) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (exchange, symbol, timeframe, range_start, range_end) DO UPDATE SET "
        "rows_returned = EXCLUDED.rows_returned, fetched_at = now()",
        exchange,
        symbol,
        TIMEFRAME,
        window.start,
        window.end,
        rows_returned,
    )


_EMPTY_SQL = """
WITH returned AS (SELECT unnest($5::timestamptz[]) AS ts),
healed AS (
    DELETE FROM market.empty_intervals e USING returned r
    WHERE e.exchange = $1 AND e.symbol = $2 AND e.timeframe = $6 AND e.ts = r.ts
    RETURNING 1
),
asked AS (
    SELECT m AS ts FROM generate_series($3::timestamptz, $4::timestamptz - INTERVAL '1 minute',
                                        INTERVAL '1 minute') AS m
    WHERE NOT EXISTS (SELECT 1 FROM returned r WHERE r.ts = m)
      AND NOT EXISTS (SELECT 1 FROM market.candles c WHERE c.exchange = $1 AND c.symbol = $2
                      AND c.timeframe = $6 AND c.ts = m)
),
recorded AS (
    INSERT INTO market.empty_intervals AS e (exchange, symbol, timeframe, ts, asks, last_asked_at)
    SELECT $1, $2, $6, ts, 1, now() FROM asked
    ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE
        SET asks = e.asks + 1, last_asked_at = now()
    RETURNING asks
)
SELECT (SELECT count(*) FROM recorded) AS empty,
       (SELECT count(*) FROM recorded WHERE asks >= $7) AS confirmed,
       (SELECT count(*) FROM healed) AS healed
"""


@dataclass(frozen=True)
class EmptyAnswers:
    """Minutes of an asked range that came back empty (``confirmed``: for the last time)."""

    empty: int
    confirmed: int
    healed: int


async def record_answers(
    conn: asyncpg.Connection, exchange: str, symbol: str, window: Interval, returned: list[datetime]
) -> EmptyAnswers:
    """Note the minutes of ``window`` the exchange returned nothing for (one more empty answer
    each) and forget listed minutes it has now returned."""
    row = await conn.fetchrow(
        _EMPTY_SQL, exchange, symbol, window.start, window.end, returned, TIMEFRAME, CONFIRM_AFTER
    )
    assert row is not None
    return EmptyAnswers(int(row["empty"]), int(row["confirmed"]), int(row["healed"]))


_GAPS_SQL = """
WITH minutes AS (
    SELECT m AS ts FROM generate_series($3::timestamptz, $4::timestamptz - INTERVAL '1 minute',
                                        INTERVAL '1 minute') AS m
),
absent AS (
    SELECT m.ts FROM minutes m
    WHERE NOT EXISTS (SELECT 1 FROM market.candles c WHERE c.exchange = $1 AND c.symbol = $2
                      AND c.timeframe = $5 AND c.ts = m.ts)
)
SELECT a.ts, e.asks,
       EXISTS (SELECT 1 FROM market.fetch_log f WHERE f.exchange = $1 AND f.symbol = $2
               AND f.timeframe = $5 AND f.range_start <= a.ts AND f.range_end > a.ts) AS asked
FROM absent a
LEFT JOIN market.empty_intervals e
       ON e.exchange = $1 AND e.symbol = $2 AND e.timeframe = $5 AND e.ts = a.ts
ORDER BY a.ts
"""


async def find_gaps(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    window: Interval,
    *,
    now: datetime | None = None,
    confirm_after: int = CONFIRM_AFTER,
) -> GapReport:
    """Classify every minute of ``window`` that has closed by ``now`` (default: the server's)."""
    if now is None:
        now = await server_now(conn)
    end = min(window.end, floor_minute(now))
    clipped = Interval(window.start, max(end, window.start))
    rows = await conn.fetch(_GAPS_SQL, exchange, symbol, clipped.start, clipped.end, TIMEFRAME)
    by_reason: dict[str, list[datetime]] = {}
    confirmed = 0
    for row in rows:
        asks = row["asks"]
        if asks is not None and asks >= confirm_after:
            confirmed += 1
            continue
        reason = (
            UNCONFIRMED_EMPTY
            if asks is not None
            else (ASKED_ABSENT if row["asked"] else NEVER_ASKED)
        )
        by_reason.setdefault(reason, []).append(row["ts"])
    gaps = sorted(
        (
            Gap(interval, reason)
            for reason, minutes in by_reason.items()
            for interval in minute_runs(minutes)
        ),
        key=lambda g: g.interval,
    )
    expected = clipped.minutes
    return GapReport(exchange, symbol, clipped, expected, expected - len(rows), confirmed, gaps)
