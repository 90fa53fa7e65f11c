"""What every dataset's rules share: results, violations, the reject shape, payload JSON, and
the helpers that spell numbers and timestamps the same way in the frame and message paths."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import polars as pl

REJECT_SCHEMA: dict[str, Any] = {
    "rule": pl.String,
    "reason": pl.String,
    "location": pl.String,
    "exchange": pl.String,
    "symbol": pl.String,
    "timeframe": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "payload": pl.String,
    "row_hash": pl.String,
    "row": pl.Int64,
}

TS_RULES: dict[str, str] = {
    "ts_missing": "the timestamp is present",
    "ts_timezone": "timestamps are timezone-aware (UTC) or epoch milliseconds",
    "ts_range": "the timestamp is not before the configured earliest time",
    "ts_future": "the timestamp is not in the future (beyond the tolerance)",
}


class Violation(NamedTuple):
    rule: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """The accepted time range, in epoch milliseconds, at one moment of the validator's clock."""

    earliest_ms: int
    latest_ms: int


@dataclass(frozen=True)
class ValidationResult:
    """Accepted rows (input columns, ts in UTC), rejections and repeated keys."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame
    duplicates: pl.DataFrame

    @property
    def rejected_rows(self) -> int:
        """Input rows rejected (a row breaking two rules appears twice in ``rejected``)."""
        return self.rejected["row"].n_unique()

    def quarantinable(self) -> pl.DataFrame:
        """Rejections plus conflicting duplicates: what belongs in ``ops.quarantine``."""
        conflicts = self.duplicates.filter(pl.col("rule").str.ends_with("duplicate_conflict"))
        return pl.concat([self.rejected, conflicts])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def payload_json(row: dict[str, Any]) -> str:
    """Canonical JSON of one input row (keys sorted), valid for PostgreSQL jsonb."""
    return json.dumps(_jsonable(row), sort_keys=True, separators=(",", ":"), allow_nan=False)


def fmt(value: object) -> str:
    """A value in a reason, spelled as polars spells it in the frame path."""
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return str(value)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def as_text(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).fill_null("null")


def bad_number(expr: pl.Expr, *, allow_zero: bool = False) -> pl.Expr:
    """Null, NaN, infinite, or not positive (``allow_zero``: negative)."""
    low = expr < 0 if allow_zero else expr <= 0
    return (expr.is_null() | expr.is_nan() | expr.is_infinite() | low).fill_null(True)


def bad_scalar(value: float | None, *, allow_zero: bool = False) -> bool:
    if value is None or not math.isfinite(value):
        return True
    return value < 0 if allow_zero else value <= 0


def check_ts(prefix: str, ts_ms: int | None, location: str, limits: Limits) -> list[Violation]:
    """The timestamp rules of one message."""
    if ts_ms is None:
        return [Violation(f"{prefix}.ts_missing", f"{location}: timestamp is missing")]
    earliest, latest = limits.earliest_ms, limits.latest_ms
    if ts_ms < earliest:
        return [
            Violation(
                f"{prefix}.ts_range", f"{location}: ts {iso(ts_ms)} is before {iso(earliest)}"
            )
        ]
    if ts_ms > latest:
        return [
            Violation(
                f"{prefix}.ts_future",
                f"{location}: ts {iso(ts_ms)} is in the future (now + tolerance {iso(latest)})",
            )
        ]
    return []


def require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {frame.columns}")
