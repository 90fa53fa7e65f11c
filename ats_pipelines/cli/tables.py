"""Query results for a terminal: a table when it fits the width, else one record per block
(psql's expanded display), or CSV / JSON for other programs."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from typing import Any

import polars as pl

FORMATS = ("auto", "table", "records", "csv", "json")
SEP = " | "


def cell(value: Any) -> str:
    """A value as a person reads it: times in ISO form, floats to 6 significant digits."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def table_lines(frame: pl.DataFrame) -> list[str]:
    rows = [[cell(v) for v in row] for row in frame.iter_rows()]
    widths = [max([len(name), *(len(r[i]) for r in rows)]) for i, name in enumerate(frame.columns)]
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return SEP.join(parts).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return [line(list(frame.columns)), rule, *(line(r) for r in rows)]


def record_lines(frame: pl.DataFrame) -> list[str]:
    width = max((len(c) for c in frame.columns), default=0)
    out = []
    for index, row in enumerate(frame.iter_rows(), start=1):
        out.append(f"-[ record {index} ]" + "-" * max(0, width - 8))
        out += [
            f"{name.ljust(width)}{SEP}{cell(v)}" for name, v in zip(frame.columns, row, strict=True)
        ]
    return out


def render(frame: pl.DataFrame, fmt: str = "auto", width: int | None = None) -> str:
    """``frame`` as text in ``fmt`` (one of :data:`FORMATS`); ``auto`` picks a table when it
    fits ``width`` (default: the terminal's, ``COLUMNS``), else records."""
    if fmt == "csv":
        return frame.write_csv().rstrip("\n")
    if fmt == "json":
        return frame.write_json()
    if fmt == "auto":
        width = width or shutil.get_terminal_size((120, 24)).columns
        lines = table_lines(frame)
        fits = max((len(line) for line in lines), default=0) <= width
        return "\n".join(lines if fits else record_lines(frame))
    return "\n".join(table_lines(frame) if fmt == "table" else record_lines(frame))
