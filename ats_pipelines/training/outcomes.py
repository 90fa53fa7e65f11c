"""Closing the loop: realised outcomes of emitted signals, and the live model's degradation.

Once a signal's label horizon has passed, :func:`fill_outcomes` reads the bars that followed it
(from wherever bars of its timeframe live, :mod:`ats_pipelines.warehouse.bar_location`) and
applies the scope's barriers (:mod:`ats_pipelines.training.labels`, the same definition the
labels of training use): ``label`` is the realised class, ``outcome`` ``win`` when it equals a
BUY/SELL prediction, ``loss`` when it is the opposite, ``neutral`` when the horizon ran out (and
for HOLD predictions, which open no position); ``realized_rr`` is the reward-to-risk the
signal's position earned. Signals whose following bars are not all stored yet stay pending.
Updates only touch rows whose outcome is still empty (idempotent).

:func:`live_performance` and :func:`degradation` read the latest outcomes of a model: the
degradation trigger enqueues a retrain when its win rate or mean realised R falls below the
configured thresholds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import numpy as np

from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.training.dataset import BUY, CLASSES, HOLD, SELL
from ats_pipelines.training.labels import Barriers, triple_barrier
from ats_pipelines.warehouse.bar_location import bars_from


@dataclass(frozen=True)
class OutcomeFill:
    evaluated: int  # outcomes written
    waiting: int  # horizon over but following bars missing
    by_outcome: dict[str, int]


def outcome_of(pred: str, label: int, rr_long: float) -> tuple[str, float | None]:
    if pred == "HOLD":
        return "neutral", None
    direction = 1.0 if pred == "BUY" else -1.0
    if label == HOLD:
        return "neutral", direction * rr_long
    won = (label == BUY) == (pred == "BUY")
    return ("win" if won else "loss"), direction * rr_long


async def fill_outcomes(
    conn: asyncpg.Connection,
    barriers_by_model: dict[str, Barriers],
    *,
    now: datetime,
    limit: int = 10_000,
) -> OutcomeFill:
    """Evaluate pending signals of the given models whose horizon has passed by ``now``."""
    rows = await conn.fetch(
        """
        SELECT id, exchange, symbol, tf, ts, model_id, pred FROM signals.signals
        WHERE outcome IS NULL AND model_id = ANY($1::text[]) AND ts < $2
        ORDER BY ts LIMIT $3
        """,
        list(barriers_by_model),
        now,
        limit,
    )
    groups: dict[tuple[str, str, str, str], list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        groups[(r["exchange"], r["symbol"], r["tf"], r["model_id"])].append(r)
    updates: list[tuple[int, str, str, float | None]] = []
    waiting = 0
    for (exchange, symbol, tf, model_id), signals in groups.items():
        barriers = barriers_by_model[model_id]
        bar = to_timedelta(tf)
        due = [s for s in signals if s["ts"] + bar * (barriers.horizon + 1) <= now]
        if not due:
            continue
        found, pending = await _evaluate_series(conn, exchange, symbol, tf, bar, barriers, due)
        updates += found
        waiting += pending
    if updates:
        await conn.execute(
            """
            UPDATE signals.signals s
            SET label = v.label, outcome = v.outcome, realized_rr = v.rr, outcome_at = now()
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) AS v(id, label,
                                                                                 outcome, rr)
            WHERE s.id = v.id AND s.outcome IS NULL
            """,
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
            [u[3] for u in updates],
        )
    counts: dict[str, int] = defaultdict(int)
    for u in updates:
        counts[u[2]] += 1
    return OutcomeFill(evaluated=len(updates), waiting=waiting, by_outcome=dict(counts))


async def _evaluate_series(
    conn: asyncpg.Connection,
    exchange: str,
    symbol: str,
    tf: str,
    bar: timedelta,
    barriers: Barriers,
    signals: list[asyncpg.Record],
) -> tuple[list[tuple[int, str, str, float | None]], int]:
    first, last = signals[0]["ts"], signals[-1]["ts"] + bar * barriers.horizon
    bars = await bars_from(conn, tf)
    candles = await conn.fetch(
        f"SELECT ts, high, low, close FROM {bars} WHERE exchange = $1 AND symbol = $2 "  # noqa: S608 - validated
        "AND ts >= $3 AND ts <= $4 ORDER BY ts",
        exchange,
        symbol,
        first,
        last,
    )
    if not candles:
        return [], len(signals)
    ts = [c["ts"] for c in candles]
    index = {t: i for i, t in enumerate(ts)}
    close = np.array([c["close"] for c in candles])
    result = triple_barrier(
        close,
        np.array([c["high"] for c in candles]),
        np.array([c["low"] for c in candles]),
        barriers,
    )
    out, waiting = [], 0
    for s in signals:
        i = index.get(s["ts"])
        end = None if i is None else i + barriers.horizon
        # the horizon must be whole bars in a row: a missing bar could hide a barrier touch
        if (
            end is None
            or end >= len(ts)
            or ts[end] != s["ts"] + bar * barriers.horizon
            or result.label[i] < 0
        ):
            waiting += 1
            continue
        label = int(result.label[i])
        outcome, rr = outcome_of(s["pred"], label, float(result.realized_rr[i]))
        out.append((s["id"], CLASSES[label], outcome, rr))
    return out, waiting


@dataclass(frozen=True)
class LivePerformance:
    model_id: str
    signals: int  # BUY/SELL signals with an outcome among the latest considered
    win_rate: float
    mean_rr: float


async def live_performance(
    conn: asyncpg.Connection, model_id: str, last: int = 200
) -> LivePerformance:
    """Win rate and mean realised R of the model's latest ``last`` evaluated BUY/SELL signals."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS n, avg((outcome = 'win')::int) AS win_rate, avg(realized_rr) AS rr
        FROM (SELECT outcome, realized_rr FROM signals.signals
              WHERE model_id = $1 AND outcome IS NOT NULL AND pred <> 'HOLD'
              ORDER BY ts DESC LIMIT $2) recent
        """,
        model_id,
        last,
    )
    assert row is not None
    return LivePerformance(
        model_id, int(row["n"]), float(row["win_rate"] or 0.0), float(row["rr"] or 0.0)
    )


@dataclass(frozen=True)
class DegradationPolicy:
    min_signals: int = 50  # judge only on this many evaluated signals
    min_win_rate: float = 0.40
    min_mean_rr: float = 0.0
    window: int = 200


def degradation(perf: LivePerformance, policy: DegradationPolicy) -> list[str]:
    """Why the live model counts as degraded (empty: it does not, or too few signals yet)."""
    if perf.signals < policy.min_signals:
        return []
    reasons = []
    if perf.win_rate < policy.min_win_rate:
        reasons.append(f"win rate {perf.win_rate:.1%} < {policy.min_win_rate:.1%}")
    if perf.mean_rr < policy.min_mean_rr:
        reasons.append(f"mean realised R {perf.mean_rr:+.3f} < {policy.min_mean_rr:+.3f}")
    return reasons


__all__ = [
    "SELL",
    "DegradationPolicy",
    "LivePerformance",
    "OutcomeFill",
    "degradation",
    "fill_outcomes",
    "live_performance",
    "outcome_of",
]
