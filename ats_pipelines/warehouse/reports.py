"""Plain-data summaries of backfills, gaps and rollups: what assets and checks show a person."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from ats_pipelines.warehouse.backfill import BackfillReport
from ats_pipelines.warehouse.coverage import GapReport
from ats_pipelines.warehouse.rollups import RollupResult

MAX_ROWS = 50


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], limit: int = MAX_ROWS
) -> str:
    rows = list(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more | " + " | " * (len(header) - 1))
    return "\n".join(lines)


def gaps_markdown(reports: Iterable[tuple[tuple[str, date], GapReport]]) -> str:
    """Missing runs of minutes, one row per gap (the check's and the asset's gap list)."""
    rows = [
        (symbol, day, str(g.interval), g.interval.minutes, g.reason)
        for (symbol, day), report in reports
        for g in report.gaps
    ]
    if not rows:
        return "No missing minutes."
    return markdown_table(("symbol", "day", "minutes (UTC)", "count", "reason"), rows)


def coverage_markdown(reports: Iterable[tuple[tuple[str, date], GapReport]]) -> str:
    """Per symbol and day: minutes expected, stored, confirmed empty, missing."""
    rows = [
        (symbol, day, r.expected_minutes, r.present, r.confirmed_empty, r.missing_minutes)
        for (symbol, day), r in reports
    ]
    return markdown_table(
        ("symbol", "day", "expected", "stored", "confirmed empty", "missing"), rows
    )


def gap_summary(reports: Sequence[GapReport]) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for report in reports:
        for reason, minutes in report.by_reason().items():
            by_reason[reason] = by_reason.get(reason, 0) + minutes
    return {
        "missing_minutes": sum(r.missing_minutes for r in reports),
        "gap_runs": sum(len(r.gaps) for r in reports),
        "confirmed_empty_minutes": sum(r.confirmed_empty for r in reports),
        "missing_by_reason": by_reason,
    }


def backfill_summary(report: BackfillReport) -> dict[str, Any]:
    """The numbers of one ``candles_1m`` materialisation."""
    first, last = report.time_range
    write = report.write
    return {
        "mode": report.mode,
        "exchange": report.exchange,
        "rest_ranges": report.requests,
        "rows_fetched": report.fetched,
        "rows_inserted": write.inserted,
        "rows_updated": write.updated,
        "rows_already_present": write.skipped,
        "rows_rejected": report.rejected,
        "rows_quarantined": report.quarantined,
        "first_ts": _iso(first),
        "last_ts": _iso(last),
        **gap_summary(list(report.gaps.values())),
    }


def partition_summary(report: BackfillReport, symbol: str, day: date) -> dict[str, Any]:
    """The numbers of one partition (symbol, day) of a ``candles_1m`` run: its own rows and
    time range, also when the run covered a range of partitions."""
    own = report.day(symbol, day)
    write = own.write
    gaps = report.gaps.get((symbol, day))
    return {
        "mode": report.mode,
        "exchange": report.exchange,
        "partitions_in_run": len(report.gaps),
        "rest_ranges": report.ranges_touching(symbol, day),
        "rows_fetched": own.fetched,
        "rows_inserted": write.inserted,
        "rows_updated": write.updated,
        "rows_already_present": write.skipped,
        "rows_rejected": own.rejected,
        "rows_quarantined": own.quarantined,
        "first_ts": _iso(own.first_ts),
        "last_ts": _iso(own.last_ts),
        **gap_summary([gaps] if gaps is not None else []),
    }


def rollup_rows(results: Iterable[RollupResult]) -> list[tuple[Any, ...]]:
    return [
        (
            r.symbol,
            lv.timeframe,
            r.mode,
            lv.buckets,
            lv.inserted,
            lv.updated,
            _iso(lv.pending_from) or "",
        )
        for r in results
        for lv in r.levels
    ]


def rollup_markdown(results: Iterable[RollupResult]) -> str:
    return markdown_table(
        ("symbol", "timeframe", "path", "buckets", "inserted", "updated", "open from"),
        rollup_rows(results),
    )
