"""The model report: Markdown (for Dagster metadata and terminals) and HTML with inline SVG plots.

Plots are drawn by :mod:`ats_pipelines.training.svg` (no plotting library): feature importance
(gain), a reliability curve (calibration of the predicted class), the confusion matrix and the
cumulative realised reward-to-risk of the signals the model and the momentum rule would have
emitted on the holdout. Files: ``<reports_dir>/models/<model_id>.md`` and ``.html``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ats_pipelines.training import svg
from ats_pipelines.training.dataset import CLASSES, DIRECTION, HOLD
from ats_pipelines.training.evaluation import MomentumRule, reliability
from ats_pipelines.training.promotion import Gate
from ats_pipelines.training.trainer import TrainResult


@dataclass
class ReportData:
    model_id: str
    scope: str
    feature_service: str
    metrics: dict[str, Any]
    importance: dict[str, float]
    reliability: list[dict[str, float]]
    cumulative: dict[str, Sequence[float]]
    study: dict[str, Any]
    params: dict[str, Any]
    rounds: int
    train: str  # window and rows, human-readable
    holdout: str
    seconds: dict[str, float]
    gates: list[Gate] = field(default_factory=list)


def _window(a: np.datetime64, b: np.datetime64, rows: int) -> str:
    return f"{str(a)[:19]} → {str(b)[:19]} ({rows:,} rows)"


def report_data(
    result: TrainResult, model_id: str, scope: str, feature_service: str, momentum_feature: str
) -> ReportData:
    h = result.holdout
    pred = result.holdout_proba.argmax(axis=1)
    rr = np.nan_to_num(h.realized_rr)
    model_cum = np.cumsum(DIRECTION[pred[pred != HOLD]] * rr[pred != HOLD])
    threshold = result.metrics["momentum"]["threshold"]
    mom_pred = MomentumRule.bucket(h.X[momentum_feature].to_numpy(), threshold)
    mom_cum = np.cumsum(DIRECTION[mom_pred[mom_pred != HOLD]] * rr[mom_pred != HOLD])
    step = max(1, len(model_cum) // 400, len(mom_cum) // 400)  # keep the SVG small
    return ReportData(
        model_id=model_id,
        scope=scope,
        feature_service=feature_service,
        metrics=result.metrics,
        importance=result.importance,
        reliability=reliability(h.y, result.holdout_proba),
        cumulative={"model": model_cum[::step].tolist(), "momentum rule": mom_cum[::step].tolist()},
        study=result.study.as_dict(),
        params=result.params,
        rounds=result.best_iteration,
        train=_window(*result.train_window, result.train_rows),
        holdout=_window(*result.holdout_window, len(h)),
        seconds=result.seconds,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _comparison_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    who = [
        k
        for k in ("model", "prior", "momentum", "champion")
        if k in metrics and metrics[k].get("comparable", True)
    ]
    rows = []
    for label, get in (
        ("log-loss", lambda m: m["log_loss"]),
        ("AUC (macro OvR)", lambda m: m["auc"]),
        ("accuracy", lambda m: m["accuracy"]),
        ("signals", lambda m: m["trading"]["signals"]),
        ("hit rate", lambda m: m["trading"]["hit_rate"]),
        ("mean realised R", lambda m: m["trading"]["mean_rr"]),
        ("total realised R", lambda m: m["trading"]["total_rr"]),
    ):
        rows.append([label] + [_fmt(get(metrics[k])) for k in who])
    return ["metric (holdout)", *who], rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sections(data: ReportData) -> list[tuple[str, list[str], list[list[str]]]]:
    model = data.metrics["model"]
    per_class = [
        [
            c,
            _fmt(model["per_class"][c]["precision"]),
            _fmt(model["per_class"][c]["recall"]),
            _fmt(model["per_class"][c]["support"]),
        ]
        for c in CLASSES
    ]
    header, rows = _comparison_rows(data.metrics)
    tuning = [[k, _fmt(v)] for k, v in data.study.items()]
    tuning.append(["boosting rounds", _fmt(data.rounds)])
    params = [[k, _fmt(v)] for k, v in sorted(data.params.items())]
    gates = [
        [g.name, "pass" if g.passed else "FAIL", "; ".join(g.reasons) or "-"] for g in data.gates
    ]
    out = [
        ("Holdout comparison", header, rows),
        ("Per class (model)", ["class", "precision", "recall", "support"], per_class),
        ("Tuning", ["", "value"], tuning),
        ("Parameters", ["parameter", "value"], params),
    ]
    if gates:
        out.append(("Promotion gates", ["gate", "result", "why"], gates))
    return out


def summary_lines(data: ReportData) -> list[str]:
    """A few lines for the demo and logs."""
    m, p, mo = (data.metrics[k] for k in ("model", "prior", "momentum"))
    lines = [
        f"model {data.model_id} (scope {data.scope}, {data.feature_service}): "
        f"{data.study['trials']} trials, {data.study['pruned']} pruned",
        f"holdout log-loss {m['log_loss']:.4f} (prior {p['log_loss']:.4f}, momentum "
        f"{mo['log_loss']:.4f}), AUC {m['auc']:.3f}",
        f"signals {m['trading']['signals']:,}: hit rate {m['trading']['hit_rate']:.1%}, mean R "
        f"{m['trading']['mean_rr']:+.3f} (momentum {mo['trading']['mean_rr']:+.3f})",
    ]
    for gate in data.gates:
        lines.append(
            f"gate {gate.name}: {'pass' if gate.passed else 'FAIL'}"
            + (f" ({'; '.join(gate.reasons)})" if gate.reasons else "")
        )
    return lines


def markdown(data: ReportData) -> str:
    parts = [
        f"# Model {data.model_id}",
        "",
        f"Scope `{data.scope}`, feature service `{data.feature_service}`. "
        f"Training {data.train}; holdout {data.holdout}.",
        "",
    ]
    for title, header, rows in _sections(data):
        parts += [f"## {title}", "", _md_table(header, rows), ""]
    top = sorted(data.importance.items(), key=lambda kv: -kv[1])[:15]
    parts += [
        "## Feature importance (gain, top 15)",
        "",
        _md_table(["feature", "gain"], [[k, f"{v:,.1f}"] for k, v in top]),
        "",
        "Plots (importance, calibration, confusion matrix, cumulative R) are in the HTML "
        "report next to this file.",
        "",
    ]
    return "\n".join(parts)


def html(data: ReportData) -> str:
    top = sorted(data.importance.items(), key=lambda kv: -kv[1])[:20]
    plots = [
        svg.bars([k for k, _ in top], [v for _, v in top], "Feature importance (gain)"),
        svg.reliability(data.reliability, "Calibration: confidence vs accuracy"),
        svg.heatmap(
            data.metrics["model"]["confusion"],
            CLASSES,
            CLASSES,
            "Confusion matrix (rows: realised)",
        ),
        svg.lines(data.cumulative, "Cumulative realised R of emitted signals (holdout)", "signals"),
    ]
    body = [
        f"<h1>Model {escape(data.model_id)}</h1>",
        f"<p>Scope <code>{escape(data.scope)}</code>, feature service "
        f"<code>{escape(data.feature_service)}</code>. Training {escape(data.train)}; "
        f"holdout {escape(data.holdout)}.</p>",
    ]
    for title, header, rows in _sections(data):
        body += [f"<h2>{escape(title)}</h2>", _html_table(header, rows)]
    body += ["<h2>Plots</h2>"] + [f"<div>{p}</div>" for p in plots]
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Model "
        f"{escape(data.model_id)}</title><style>{style}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_report(data: ReportData, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``<reports_dir>/models/<model_id>.md`` and ``.html``; returns both paths."""
    folder = reports_dir / "models"
    folder.mkdir(parents=True, exist_ok=True)
    md_path, html_path = folder / f"{data.model_id}.md", folder / f"{data.model_id}.html"
    md_path.write_text(markdown(data))
    html_path.write_text(html(data))
    return md_path, html_path
