"""Building the quality report: run the check set, record it, render Data Docs and the summary.

Output under ``report_dir`` (``.ats/reports/quality/`` by default):

* ``index.html`` — the one-page summary (self-contained);
* ``summary.md`` / ``summary.json`` — the same table for Dagster metadata and machines;
* ``data_docs/`` — Great Expectations Data Docs of this build.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ats_pipelines.features.lake import Lake
from ats_pipelines.quality.checkset import CheckSetResult, data_window, run_check_set
from ats_pipelines.quality.docs import build_data_docs
from ats_pipelines.quality.history import (
    recent_runs,
    recent_scores,
    record_check_runs,
    store_scores,
)
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.reconcile_sources import KlineSource
from ats_pipelines.quality.report import SummaryRow, render_html, render_markdown, summary_rows

INDEX = "index.html"
DATA_DOCS = "data_docs"


@dataclass(frozen=True)
class QualityReport:
    index: Path
    data_docs: Path | None
    rows: list[SummaryRow]
    checks: CheckSetResult
    markdown: str

    @property
    def failing(self) -> list[SummaryRow]:
        return [r for r in self.rows if r.status == "FAIL"]


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a reader never sees half a page)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class ReportData:
    """What a report shows: this run's checks plus the recent history of every check."""

    now: datetime
    run_id: str
    checks: CheckSetResult
    rows: list[SummaryRow]
    scores: list[dict[str, Any]]


async def gather_report(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    policy: QualityPolicy,
    run_id: str,
    days: int = 1,
    window: tuple[datetime, datetime] | None = None,
    clients: dict[str, KlineSource] | None = None,
    lake: Lake | None = None,
    trend_runs: int = 10,
) -> ReportData:
    """Run the check set, record its runs and scores, and read the history back."""
    window = window or await data_window(conn, now=now, days=days)
    checks = await run_check_set(conn, window, now=now, policy=policy, clients=clients, lake=lake)
    await record_check_runs(conn, [e.check_run(run_id, window, now) for e in checks.entries])
    await store_scores(conn, checks.scores)
    rows = summary_rows(await recent_runs(conn, trend_runs))
    return ReportData(now, run_id, checks, rows, await recent_scores(conn, trend_runs))


def write_report(data: ReportData, report_dir: Path, *, data_docs: bool = True) -> QualityReport:
    """Render Data Docs (optional) and the summary page into ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    checks = data.checks
    docs = None
    if data_docs:
        docs = build_data_docs(
            [(e.label, e.outcome) for e in checks.entries if e.outcome],
            report_dir / DATA_DOCS,
            run_name=data.run_id,
            run_time=data.now,
        )
    index = report_dir / INDEX
    _write(
        index,
        render_html(
            generated_at=data.now,
            window=checks.window,
            rows=data.rows,
            scores=data.scores,
            entries=checks.entries,
            data_docs_href=f"{DATA_DOCS}/index.html" if docs else None,
        ),
    )
    markdown = render_markdown(data.rows)
    _write(report_dir / "summary.md", markdown + "\n")
    _write(
        report_dir / "summary.json",
        json.dumps(
            {
                "generated_at": data.now.isoformat(),
                "window": [w.isoformat() for w in checks.window],
                "checks": [asdict(r) for r in data.rows],
                "scores": data.scores,
            },
            default=str,
            indent=1,
        ),
    )
    return QualityReport(index, docs, data.rows, checks, markdown)
