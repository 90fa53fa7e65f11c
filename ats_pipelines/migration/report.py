"""The migration report: Markdown and HTML under ``.ats/reports/migration/``, built from the
ledger rows of a run (or of a root), plus the files that matched no pattern."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = (
    "file",
    "dataset",
    "symbol",
    "tf",
    "status",
    "read",
    "inserted",
    "existing",
    "duplicate",
    "quarantined",
    "first",
    "last",
    "checksum",
    "missing bars",
)


@dataclass
class ReportData:
    title: str
    meta: list[tuple[str, str]]
    rows: list[dict[str, Any]]  # ledger rows (``ledger.as_dict``)
    unmatched: list[tuple[str, str]]  # (relative path, reason)
    notes: list[str] = field(default_factory=list)

    def totals(self) -> list[tuple[str, str]]:
        status = Counter(r.get("status") for r in self.rows)
        sums = {
            k: sum(int(r.get(k) or 0) for r in self.rows)
            for k in (
                "rows_read",
                "rows_inserted",
                "rows_existing",
                "rows_duplicate",
                "rows_quarantined",
            )
        }
        return [
            ("files", str(len(self.rows))),
            *((f"status {k}", str(v)) for k, v in sorted(status.items(), key=str)),
            ("unmatched files", str(len(self.unmatched))),
            *((k.replace("_", " "), f"{v:,}") for k, v in sums.items()),
        ]

    def table(self) -> list[list[str]]:
        out = []
        for r in self.rows:
            ver = r.get("verification") or {}
            grid = ver.get("grid") or {}
            checksum = "-"
            if r.get("loaded_checksum"):
                checksum = (
                    "match" if r.get("loaded_checksum") == r.get("source_checksum") else "MISMATCH"
                )
            out.append(
                [
                    str(r.get("relative_path") or r.get("file_path")),
                    str(r.get("dataset") or ""),
                    str(r.get("symbol") or ""),
                    str(r.get("timeframe") or "-"),
                    str(r.get("status")),
                    *(
                        f"{int(r.get(k) or 0):,}"
                        for k in (
                            "rows_read",
                            "rows_inserted",
                            "rows_existing",
                            "rows_duplicate",
                            "rows_quarantined",
                        )
                    ),
                    _short(r.get("first_ts")),
                    _short(r.get("last_ts")),
                    checksum,
                    f"{grid['missing']:,}" if "missing" in grid else "-",
                ]
            )
        return out

    def failures(self) -> list[tuple[str, str]]:
        return self._messages(("failed", "rolled_back", "error"))

    def planned(self) -> list[tuple[str, str]]:
        """What a dry run found each file would do."""
        return self._messages(("dry_run",))

    def _messages(self, statuses: tuple[str, ...]) -> list[tuple[str, str]]:
        return [
            (str(r.get("relative_path") or r.get("file_path")), str(r.get("error")))
            for r in self.rows
            if r.get("status") in statuses
        ]

    def sections(self) -> list[tuple[str, tuple[str, ...], list[tuple[str, str]]]]:
        out = []
        if self.planned():
            out.append(("Dry run: what migrating would do", ("file", "outcome"), self.planned()))
        out += [
            ("Failed or rolled back", ("file", "reason"), self.failures()),
            ("Unmatched files (not migrated)", ("file", "reason"), self.unmatched),
            ("Assumptions made", ("assumption", "files"), self.assumptions()),
            ("Largest gaps against the timeframe grid", ("file", "gap"), self.gaps()),
        ]
        return out

    def assumptions(self) -> list[tuple[str, str]]:
        seen: Counter[str] = Counter()
        for r in self.rows:
            for key, value in (r.get("assumptions") or {}).items():
                if key in ("symbol_text", "renamed_columns", "epoch_units"):
                    continue
                seen[f"{key}: {value}"] += 1
            units = (r.get("assumptions") or {}).get("epoch_units")
            if units:
                seen[f"epoch units detected: {', '.join(sorted(units))}"] += 1
        return [(k, str(n)) for k, n in sorted(seen.items())]

    def gaps(self) -> list[tuple[str, str]]:
        out = []
        for r in self.rows:
            grid = (r.get("verification") or {}).get("grid") or {}
            for gap in grid.get("largest_gaps", [])[:5]:
                out.append(
                    (
                        str(r.get("relative_path")),
                        f"{gap['missing']} bar(s) missing between {gap['after']} and "
                        f"{gap['before']}",
                    )
                )
        return out


def _short(value: Any) -> str:
    return "-" if value is None else str(value).replace("T", " ")[:19]


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(data: ReportData) -> str:
    parts = [f"# {data.title}", "", *(f"- **{k}**: {v}" for k, v in data.meta), ""]
    parts += ["## Totals", "", md_table(("what", "value"), data.totals()), ""]
    parts += ["## Files", "", md_table(COLUMNS, data.table()) if data.rows else "(none)", ""]
    for title, header, rows in data.sections():
        parts += [f"## {title}", "", md_table(header, rows) if rows else "(none)", ""]
    parts += [f"- {n}" for n in data.notes]
    return "\n".join(parts).rstrip() + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(data: ReportData) -> str:
    meta = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in data.meta)
    sections = [
        ("Totals", ("what", "value"), data.totals()),
        ("Files", COLUMNS, data.table()),
        *data.sections(),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2>{_html_table(h, r)}" for t, h, r in sections)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in data.notes)
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}th{background:#eee}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(data.title)}</title><style>{style}</style></head><body>"
        f"<h1>{html.escape(data.title)}</h1><ul>{meta}</ul>{body}<ul>{notes}</ul>"
        "</body></html>\n"
    )


def write_report(data: ReportData, reports_dir: Path, stem: str | None = None) -> list[Path]:
    """Write ``<stem>.md`` and ``.html`` plus ``latest.md``/``latest.html``; returns paths."""
    folder = reports_dir / "migration"
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or "migration-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    md, page = to_markdown(data), to_html(data)
    paths = []
    for name in (stem, "latest"):
        for suffix, text in ((".md", md), (".html", page)):
            path = folder / f"{name}{suffix}"
            path.write_text(text, encoding="utf-8")
            if name == stem:
                paths.append(path)
    return paths
