"""The one-page quality summary: a static, self-contained HTML file a person opens without
Dagster (no scripts, no remote styles), plus its Markdown twin for Dagster metadata.

Per asset and check: status of the latest run, when it ran, rows, coverage, failing rules and
the trend over recent runs (from ``ops.quality_check_runs``); quality scores per source and
symbol with their trend; then the details of this build — failing expectations with offending
rows, gaps, reconciliation disagreements and stream freshness.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from ats_pipelines.quality.catalog import SPECS
from ats_pipelines.quality.checkset import Entry

DETAIL_ROWS = 20
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.PASS{color:#186a1b;font-weight:bold}
.FAIL{color:#b00020;font-weight:bold}.t{display:inline-block;width:10px;height:10px;margin:0 1px;
border-radius:2px}.t.ok{background:#2e7d32}.t.bad{background:#c62828}code{font-size:12px}
.muted{color:#777}
"""


@dataclass(frozen=True)
class SummaryRow:
    asset: str
    check: str
    severity: str
    blocking: bool
    status: str
    last_run: datetime
    evaluations: int  # partitions or exchanges the latest run evaluated
    failing: list[str]  # ... and those that failed
    rows: int
    coverage: float | None
    failing_rules: list[str]
    trend: list[bool]  # oldest first

    @property
    def passes(self) -> str:
        return f"{sum(self.trend)}/{len(self.trend)}"


def summary_rows(history: Iterable[dict[str, Any]]) -> list[SummaryRow]:
    """One row per (asset, check) from its runs, newest first in ``history``."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in history:
        grouped.setdefault((run["asset"], run["check_name"]), []).append(run)
    out = []
    for (asset, check), runs in sorted(grouped.items()):
        latest = runs[0]
        spec = SPECS.get((asset, check))
        out.append(
            SummaryRow(
                asset=asset,
                check=check,
                severity=latest["severity"],
                blocking=spec.blocking if spec else False,
                status="PASS" if latest["passed"] else "FAIL",
                last_run=latest["evaluated_at"],
                evaluations=latest["evaluations"],
                failing=latest["failing_partitions"],
                rows=int(latest["rows_checked"]),
                coverage=latest["coverage"],
                failing_rules=sorted({str(f.get("rule")) for f in latest["failed"] if f}),
                trend=[bool(r["passed"]) for r in reversed(runs)],
            )
        )
    return out


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f} %"


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], table_id: str = "", raw: int = -1
) -> str:
    """HTML table; cells are escaped except column ``raw`` (already HTML)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i == raw else _e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _scope(row: SummaryRow) -> str:
    if not row.failing:
        return f"{row.evaluations} evaluated"
    return f"failing: {', '.join(row.failing[:5])}" + (" …" if len(row.failing) > 5 else "")


def _trend(trend: Sequence[bool]) -> str:
    return "".join(
        f'<span class="t {"ok" if ok else "bad"}" title="{"pass" if ok else "fail"}"></span>'
        for ok in trend
    )


def _frame(frame: pl.DataFrame | None, limit: int = DETAIL_ROWS) -> str:
    if frame is None or frame.is_empty():
        return '<p class="muted">none</p>'
    shown = frame.head(limit)
    more = f'<p class="muted">… {frame.height - limit} more</p>' if frame.height > limit else ""
    return _table(shown.columns, shown.rows()) + more


def _entry_details(entry: Entry) -> str:
    parts = [
        f"<h3>{_e(entry.spec.asset)} · {_e(entry.spec.name)} · {_e(entry.label)}</h3>",
        f"<p>{_e(entry.summary)}</p>",
    ]
    if entry.outcome:
        for f in entry.outcome.failures:
            parts.append(f"<p><code>{_e(f.line())}</code></p>")
            if f.sample:
                parts.append(_frame(pl.DataFrame(f.sample, infer_schema_length=None)))
        if not entry.outcome.gaps.is_empty() and not entry.outcome.success:
            parts.append(
                "<p>Gaps (missing bars, not confirmed empty):</p>" + _frame(entry.outcome.gaps)
            )
    if entry.reconciliation:
        r = entry.reconciliation
        parts.append("<p>Disagreements:</p>" + _frame(r.disagreements))
        if not r.only_left.is_empty():
            parts.append(f"<p>Only in {_e(r.left)}:</p>" + _frame(r.only_left))
    if entry.freshness:
        parts.append(
            _table(
                (
                    "exchange",
                    "symbol",
                    "shard",
                    "beat age s",
                    "newest bar",
                    "bar lag s",
                    "fresh",
                    "reason",
                ),
                [
                    (
                        s.exchange,
                        s.symbol,
                        s.shard,
                        f"{s.beat_age_s:.0f}",
                        s.last_bar,
                        "" if s.bar_lag_s is None else f"{s.bar_lag_s:.0f}",
                        s.fresh,
                        s.reason,
                    )
                    for s in entry.freshness.symbols
                ],
            )
        )
    return "".join(parts)


def _score_rows(scores: Iterable[dict[str, Any]]) -> list[tuple[object, ...]]:
    grouped: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for s in scores:
        grouped.setdefault((s["dataset"], s["exchange"], s["symbol"], s["source"]), []).append(s)
    rows = []
    for key, runs in sorted(grouped.items()):
        latest = runs[0]
        trend = " → ".join(f"{r['score']:.3f}" for r in reversed(runs))
        rows.append(
            (
                *key,
                f"{latest['completeness']:.3f}",
                f"{latest['freshness']:.3f}",
                f"{latest['validity']:.3f}",
                f"{latest['score']:.3f}",
                trend,
                latest["window_end"],
            )
        )
    return rows


_SUMMARY_COLUMNS = (
    "asset",
    "check",
    "severity",
    "status",
    "last run",
    "scope",
    "rows",
    "coverage",
    "failing rules",
    "passed",
    "trend",
)


def _summary_table(rows: Sequence[SummaryRow]) -> str:
    """One row per check, its status cell coloured."""
    return (
        _table(
            _SUMMARY_COLUMNS,
            [
                (
                    r.asset,
                    r.check,
                    r.severity + (" · blocking" if r.blocking else ""),
                    r.status,
                    r.last_run.isoformat(timespec="seconds"),
                    _scope(r),
                    r.rows,
                    _pct(r.coverage),
                    ", ".join(r.failing_rules),
                    r.passes,
                    _trend(r.trend),
                )
                for r in rows
            ],
            table_id="summary",
            raw=10,
        )
        .replace("<td>PASS</td>", '<td class="PASS">PASS</td>')
        .replace("<td>FAIL</td>", '<td class="FAIL">FAIL</td>')
    )


def render_html(
    *,
    generated_at: datetime,
    window: tuple[datetime, datetime],
    rows: Sequence[SummaryRow],
    scores: Sequence[dict[str, Any]],
    entries: Sequence[Entry],
    data_docs_href: str | None,
) -> str:
    failing = sum(r.status == "FAIL" for r in rows)
    summary = _summary_table(rows)
    score_table = _table(
        (
            "dataset",
            "exchange",
            "symbol",
            "source",
            "completeness",
            "freshness",
            "validity",
            "score",
            "trend (oldest → newest)",
            "window end",
        ),
        _score_rows(scores),
        table_id="scores",
    )
    docs = (
        f'<p><a href="{_e(data_docs_href)}">Great Expectations Data Docs</a> of this build '
        "(every suite, every expectation).</p>"
        if data_docs_href
        else ""
    )
    recon = [e for e in entries if e.reconciliation]
    fresh = [e for e in entries if e.freshness]
    bad = [e for e in entries if not e.passed and e.outcome]
    return "".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data quality</title>",
            f"<style>{_CSS}</style></head><body>",
            "<h1>Data quality</h1>",
            f"<p>Built {_e(generated_at.isoformat(timespec='seconds'))} over "
            f"<b>{_e(window[0].isoformat())}</b> → <b>{_e(window[1].isoformat())}</b>: "
            f"<span id='verdict'>{len(rows) - failing} of {len(rows)} checks passing</span>.</p>",
            docs,
            "<h2>Checks</h2>",
            summary,
            "<h2>Quality score per source and symbol</h2>",
            score_table,
            "<h2 id='reconciliation'>Reconciliation</h2>",
            "".join(_entry_details(e) for e in recon) or '<p class="muted">nothing to compare</p>',
            "<h2 id='freshness'>Stream freshness</h2>",
            "".join(_entry_details(e) for e in fresh) or '<p class="muted">not evaluated</p>',
            "<h2 id='failures'>Failing suites of this build</h2>",
            "".join(_entry_details(e) for e in bad) or '<p class="muted">none</p>',
            "</body></html>",
        ]
    )


def render_markdown(rows: Sequence[SummaryRow]) -> str:
    lines = [
        "| asset | check | status | last run | rows | coverage | failing rules | trend |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        trend = "".join("✓" if ok else "✗" for ok in r.trend)
        lines.append(
            f"| {r.asset} | {r.check} | {r.status} | "
            f"{r.last_run.isoformat(timespec='seconds')} | {r.rows} | "
            f"{_pct(r.coverage)} | {', '.join(r.failing_rules)} | {trend} |"
        )
    return "\n".join(lines)
