"""Backfill and gap repair of 1-minute candles over days × symbols (what ``candles_1m`` runs).

A backfill asks each symbol's consecutive days as one REST range (pages of 1000 minutes, none
twice). A repair asks exactly the minutes the gap report lists — interior runs too, not only
the head or the tail — and nothing else, so repairing a complete range makes no request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg

from ats_pipelines.db.bulk import EMPTY_RESULT, WriteResult
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.warehouse.candles import CandleSource, DayResult, WindowResult, ingest_window
from ats_pipelines.warehouse.coverage import GapReport, find_gaps
from ats_pipelines.warehouse.intervals import DAY, Interval, day_runs, day_start

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """Everything a materialisation reports: writes, the time range, and the gaps left."""

    exchange: str
    mode: str  # "backfill" or "repair"
    windows: list[WindowResult] = field(default_factory=list)
    gaps: dict[tuple[str, date], GapReport] = field(default_factory=dict)

    @property
    def write(self) -> WriteResult:
        total = EMPTY_RESULT
        for w in self.windows:
            total = total + w.write
        return total

    @property
    def fetched(self) -> int:
        return sum(w.fetched for w in self.windows)

    @property
    def rejected(self) -> int:
        return sum(w.rejected for w in self.windows)

    @property
    def quarantined(self) -> int:
        return sum(w.quarantined for w in self.windows)

    @property
    def requests(self) -> int:
        """Ranges asked (each may be several pages)."""
        return sum(1 for w in self.windows if w.asked is not None)

    @property
    def missing_minutes(self) -> int:
        return sum(g.missing_minutes for g in self.gaps.values())

    def day(self, symbol: str, day: date) -> DayResult:
        """One partition's own numbers: what the run's ranges produced for that symbol and day."""
        found = [w.days[day] for w in self.windows if w.symbol == symbol and day in w.days]
        return sum(found, DayResult())

    def ranges_touching(self, symbol: str, day: date) -> int:
        """REST ranges of the run that asked minutes of that symbol and day."""
        return sum(1 for w in self.windows if w.symbol == symbol and day in w.days)

    @property
    def time_range(self) -> tuple[datetime | None, datetime | None]:
        firsts = [w.first_ts for w in self.windows if w.first_ts is not None]
        lasts = [w.last_ts for w in self.windows if w.last_ts is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def partition_days(keys: Iterable[tuple[str, str]]) -> dict[str, list[date]]:
    """``(day, symbol)`` pairs -> days per symbol, sorted."""
    out: dict[str, set[date]] = {}
    for day, symbol in keys:
        out.setdefault(symbol, set()).add(date.fromisoformat(day))
    return {s: sorted(d) for s, d in sorted(out.items())}


async def gap_reports(
    conn: asyncpg.Connection, exchange: str, symbol: str, days: Iterable[date]
) -> dict[date, GapReport]:
    """One gap report per day (minutes of today that have not closed are not gaps)."""
    return {
        day: await find_gaps(conn, exchange, symbol, Interval(day_start(day), day_start(day) + DAY))
        for day in days
    }


async def backfill(
    conn: asyncpg.Connection,
    client: CandleSource,
    *,
    exchange: str,
    days_by_symbol: Mapping[str, list[date]],
    repair_only: bool = False,
    validator: DataValidator | None = None,
) -> BackfillReport:
    """Backfill (or repair) every symbol's days; returns writes and the gaps that remain."""
    validator = validator or DataValidator()
    batch_id = await conn.fetchval("SELECT nextval('ops.batch_id_seq')")
    assert batch_id is not None
    report = BackfillReport(exchange, "repair" if repair_only else "backfill")
    for symbol, days in days_by_symbol.items():
        for run in day_runs(days):
            if repair_only:
                gaps = await find_gaps(conn, exchange, symbol, run)
                windows = gaps.missing_intervals()
                log.info(
                    "event=candles_repair exchange=%s symbol=%s window=%s intervals=%s minutes=%s",
                    exchange,
                    symbol,
                    run,
                    len(windows),
                    gaps.missing_minutes,
                )
            else:
                windows = [run]
            for window in windows:
                report.windows.append(
                    await ingest_window(
                        conn,
                        client,
                        exchange=exchange,
                        symbol=symbol,
                        window=window,
                        validator=validator,
                        batch_id=batch_id,
                    )
                )
        for day, gaps in (await gap_reports(conn, exchange, symbol, days)).items():
            report.gaps[(symbol, day)] = gaps
    return report
