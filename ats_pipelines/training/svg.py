"""Tiny inline-SVG charts for the model report (no plotting library needed).

Each function returns one ``<svg>`` element as a string; values are escaped and every number is
formatted, so the output is safe to embed in HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD = 560, 260, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def _frame(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f"<style>text{{font:11px sans-serif}}</style>{body}</svg>"
    )


def bars(labels: Sequence[str], values: Sequence[float], title: str) -> str:
    """Horizontal bars, largest first as given."""
    row, left = 18, 170
    height = PAD + row * max(1, len(labels))
    top = max([v for v in values if v > 0], default=1.0)
    parts = [f'<text x="4" y="14">{escape(title)}</text>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        width = max(0.0, value) / top * (W - left - 70)
        parts.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">'
            f"{escape(label[:28])}</text>"
            f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{row - 4}" '
            f'fill="{COLOURS[0]}"/>'
            f'<text x="{left + width + 4:.1f}" y="{y + 12}">{value:,.4g}</text>'
        )
    return _frame(W, height, "".join(parts), title)


def _scale(values: Sequence[float], lo: float, hi: float, a: float, b: float) -> list[float]:
    span = (hi - lo) or 1.0
    return [a + (v - lo) / span * (b - a) for v in values]


def lines(series: dict[str, Sequence[float]], title: str, y_label: str = "") -> str:
    """Polylines over their index (e.g. cumulative R per signal)."""
    all_values = [v for s in series.values() for v in s] or [0.0]
    lo, hi = min([*all_values, 0.0]), max([*all_values, 0.0])
    longest = max((len(s) for s in series.values()), default=1)
    parts = [
        f'<text x="4" y="14">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#999"/>',
        f'<line x1="{PAD}" y1="20" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>',
        f'<text x="{PAD - 4}" y="24" text-anchor="end">{hi:,.3g}</text>',
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">{lo:,.3g}</text>',
        f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end">{longest:,} '
        f"{escape(y_label)}</text>",
    ]
    zero = _scale([0.0], lo, hi, H - PAD, 20)[0]
    parts.append(
        f'<line x1="{PAD}" y1="{zero:.1f}" x2="{W - 10}" y2="{zero:.1f}" '
        'stroke="#ccc" stroke-dasharray="4 3"/>'
    )
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(values) > 1:
            xs = _scale(list(range(len(values))), 0, max(1, longest - 1), PAD, W - 10)
            ys = _scale(list(values), lo, hi, H - PAD, 20)
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
        parts.append(f'<text x="{PAD + 8}" y="{34 + 14 * i}" fill="{colour}">{escape(name)}</text>')
    return _frame(W, H, "".join(parts), title)


def reliability(points: Sequence[dict[str, float]], title: str) -> str:
    """Mean confidence (x) vs accuracy (y) per bin, with the diagonal of perfect calibration."""
    size = H - PAD - 20

    def x(v: float) -> float:
        return PAD + v * size

    def y(v: float) -> float:
        return H - PAD - v * size

    parts = [
        f'<text x="4" y="14">{escape(title)}</text>',
        f'<rect x="{PAD}" y="{y(1):.1f}" width="{size}" height="{size}" fill="none" '
        'stroke="#999"/>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#ccc" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(0.5)}" y="{H - PAD + 14}" text-anchor="middle">confidence</text>',
        f'<text x="{PAD - 4}" y="{y(1) + 4}" text-anchor="end">1</text>',
        f'<text x="{PAD - 4}" y="{y(0)}" text-anchor="end">0</text>',
    ]
    pts = [(x(p["confidence"]), y(p["accuracy"])) for p in points]
    if len(pts) > 1:
        parts.append(
            '<polyline points="'
            + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            + f'" fill="none" stroke="{COLOURS[0]}" stroke-width="1.5"/>'
        )
    for (a, b), p in zip(pts, points, strict=True):
        parts.append(
            f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{COLOURS[0]}">'
            f"<title>n={int(p['count'])}</title></circle>"
        )
    return _frame(W, H, "".join(parts), title)


def heatmap(
    matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str
) -> str:
    """A labelled matrix whose cell shade is its share of the row."""
    cell, left, top = 64, 70, 44
    width, height = left + cell * len(cols) + 10, top + cell * len(rows) + 10
    parts = [
        f'<text x="4" y="14">{escape(title)}</text>',
        f'<text x="{left}" y="30">predicted →</text>',
    ]
    for j, name in enumerate(cols):
        parts.append(
            f'<text x="{left + j * cell + cell / 2}" y="{top - 4}" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    for i, name in enumerate(rows):
        total = sum(matrix[i]) or 1
        parts.append(
            f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        for j, value in enumerate(matrix[i]):
            shade = value / total
            parts.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{COLOURS[0]}" fill-opacity="{0.08 + 0.9 * shade:.2f}"/>'
                f'<text x="{left + j * cell + cell / 2}" y="{top + i * cell + cell / 2 + 4}" '
                f'text-anchor="middle">{value:,.0f}</text>'
            )
    return _frame(width, height, "".join(parts), title)
