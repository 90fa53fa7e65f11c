"""Minute ranges: day windows of partitions, and runs of minutes folded into intervals."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, order=True)
class Interval:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start) / MINUTE)

    def __str__(self) -> str:
        return f"{_iso(self.start)}..{_iso(self.end)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def day_start(day: date | str) -> datetime:
    value = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def day_runs(days: Iterable[date | str]) -> list[Interval]:
    """Consecutive days folded into ``[first day, day after the last)`` windows."""
    starts = sorted({day_start(d) for d in days})
    out: list[Interval] = []
    for start in starts:
        if out and out[-1].end == start:
            out[-1] = Interval(out[-1].start, start + DAY)
        else:
            out.append(Interval(start, start + DAY))
    return out


def split_days(window: Interval) -> list[Interval]:
    """``window`` cut at UTC midnights."""
    out: list[Interval] = []
    cursor = window.start
    while cursor < window.end:
        midnight = day_start(cursor.date()) + DAY
        out.append(Interval(cursor, min(midnight, window.end)))
        cursor = midnight
    return out


def minute_runs(minutes: Iterable[datetime]) -> list[Interval]:
    """Minute open times folded into intervals of consecutive minutes."""
    out: list[Interval] = []
    for minute in sorted(set(minutes)):
        if out and out[-1].end == minute:
            out[-1] = Interval(out[-1].start, minute + MINUTE)
        else:
            out.append(Interval(minute, minute + MINUTE))
    return out


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
