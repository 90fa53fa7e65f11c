"""Binance kline intervals: their lengths and how an instant maps to the interval holding it.

Binance aligns every interval to the Unix epoch in UTC except weeks (they open on Monday) and
months (calendar months), so those two are computed rather than taken modulo a length.
"""

from __future__ import annotations

from datetime import UTC, datetime

MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday; Monday 1970-01-05 is the first week boundary.
_FIRST_MONDAY_MS = 4 * DAY_MS

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": WEEK_MS,
}
INTERVALS: tuple[str, ...] = (*INTERVAL_MS, "1M")


def is_interval(interval: str) -> bool:
    return interval in INTERVAL_MS or interval == "1M"


def interval_open(ts_ms: int, interval: str) -> int:
    """Open time of the ``interval`` bar that contains ``ts_ms``."""
    if interval == "1M":
        moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)
    if interval == "1w":
        return ts_ms - (ts_ms - _FIRST_MONDAY_MS) % WEEK_MS
    length = INTERVAL_MS[interval]
    return ts_ms - ts_ms % length


def next_open(open_ms: int, interval: str) -> int:
    """Open time of the bar after the one opening at ``open_ms``."""
    if interval == "1M":
        moment = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
        year, month = moment.year + moment.month // 12, moment.month % 12 + 1
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    return open_ms + INTERVAL_MS[interval]


def opens_between(start_ms: int, end_ms: int, interval: str, limit: int) -> list[int]:
    """Up to ``limit`` bar open times in ``[interval_open(start), end]``, oldest first."""
    opens: list[int] = []
    t = interval_open(start_ms, interval)
    while t <= end_ms and len(opens) < limit:
        opens.append(t)
        t = next_open(t, interval)
    return opens
