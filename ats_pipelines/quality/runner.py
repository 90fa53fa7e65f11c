"""Running suites on prepared frames: Great Expectations validates, we keep what a person needs.

Frames go to GX as pandas (a whole-dataframe batch of an in-memory datasource). The pandas path
was chosen over a SQL datasource because the same suites must validate frames that never reach
the database (files, REST pages, and broken copies the tables' CHECK constraints would refuse),
and because one dataframe pass per expectation is cheaper here than one SQL round trip per
metric (see ``bench/bench_quality.py``). Each failing expectation becomes a :class:`Failure`
naming its rule, the expectation, how many rows broke it and a sample of those rows (located
through the ``_row`` column every prepared frame carries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from ats_pipelines.quality.context import quality_context
from ats_pipelines.quality.prepare import GAP_SCHEMA, TS_NAMES, Prepared
from ats_pipelines.quality.suites import Suites

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )

KEY_COLUMNS = ("exchange", "symbol", "timeframe", "tf", "model_id", "trade_id", "source")
SAMPLE_ROWS = 10
_COLUMN_ARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class Failure:
    """One failing expectation: its rule, what it demanded, and the rows that broke it."""

    rule: str
    expectation: str
    batch: str
    columns: tuple[str, ...]
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: str | None
    sample: list[dict[str, Any]]
    error: str | None = None

    def line(self) -> str:
        what = f"{self.rule}: {self.expectation}({', '.join(self.columns)})"
        if self.error:
            return f"{what} raised {self.error}"
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.3g} %)" if self.unexpected_percent else ""
            return f"{what}: {self.unexpected_count} row(s){pct}"
        return f"{what}: observed {self.observed}"


@dataclass
class SuiteOutcome:
    """The result of one suite (all its batches) on one frame."""

    name: str
    success: bool
    rows: int
    evaluated: int
    failures: list[Failure]
    coverage: float | None = None
    gaps: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GAP_SCHEMA))
    series: pl.DataFrame | None = None
    results: dict[str, ExpectationSuiteValidationResult] = field(default_factory=dict)
    suites: Suites = field(default_factory=dict)

    @property
    def failed_rules(self) -> list[str]:
        return sorted({f.rule for f in self.failures})

    @property
    def bad_rows(self) -> int:
        """Rows of the ``rows`` batch some row-level expectation flagged (upper bound: sum)."""
        return sum(f.unexpected_count or 0 for f in self.failures if f.batch == "rows")

    def summary(self) -> str:
        if self.success:
            return f"{self.name}: {self.evaluated} expectations passed on {self.rows} rows"
        return (
            f"{self.name}: {len(self.failures)} of {self.evaluated} expectations failed "
            f"on {self.rows} rows ({', '.join(self.failed_rules)})"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value[:5]] + (["…"] if len(value) > 5 else [])
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalars
        return _jsonable(item())
    return value


def _columns(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    cols = [kwargs[k] for k in _COLUMN_ARGS if kwargs.get(k)]
    cols += list(kwargs.get("column_list") or [])
    return tuple(cols)


def _sample(
    frame: pl.DataFrame, rows: list[int], columns: tuple[str, ...], batch: str
) -> list[dict[str, Any]]:
    if not rows:
        return []
    if batch != "rows":
        show = [c for c in frame.columns if c != "_row"]
    else:
        keys = [c for c in (*KEY_COLUMNS, *TS_NAMES) if c in frame.columns]
        show = list(dict.fromkeys([*keys, *[c for c in columns if c in frame.columns]]))
    picked = frame.filter(pl.col("_row").is_in(rows)).sort("_row").select("_row", *show)
    return [{k: _jsonable(v) for k, v in r.items()} for r in picked.iter_rows(named=True)]


def _pandas(frame: pl.DataFrame) -> Any:
    nested = [
        c
        for c, t in frame.schema.items()
        if isinstance(t, pl.List | pl.Struct | pl.Array | pl.Object)
    ]
    return frame.drop(nested).to_pandas()


def _asset(context: AbstractDataContext, name: str) -> Any:
    source = context.data_sources.add_or_update_pandas(name="frames")
    try:
        return source.get_asset(name)
    except LookupError:
        return source.add_dataframe_asset(name)


def _failures(
    result: ExpectationSuiteValidationResult, frame: pl.DataFrame, batch: str, sample_rows: int
) -> list[Failure]:
    out = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        assert cfg is not None
        info = r.exception_info or {}
        error = info.get("exception_message") if info.get("raised_exception") else None
        res = r.result or {}
        rows = [
            int(d["_row"])
            for d in res.get("partial_unexpected_index_list") or []
            if isinstance(d, dict) and "_row" in d
        ][:sample_rows]
        columns = _columns(cfg.kwargs)
        observed = res.get("observed_value")
        out.append(
            Failure(
                rule=str((cfg.meta or {}).get("rule", cfg.type)),
                expectation=cfg.type,
                batch=batch,
                columns=columns,
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                observed=None if observed is None else str(_jsonable(observed)),
                sample=_sample(frame, rows, columns, batch),
                error=error,
            )
        )
    return out


def run_suites(
    prepared: Prepared,
    suites: Suites,
    *,
    name: str,
    parameters: Mapping[str, Any] | None = None,
    context: AbstractDataContext | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> SuiteOutcome:
    """Validate each prepared batch with its suite; one outcome for all of them."""
    context = context or quality_context()
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": ["_row"],
        "partial_unexpected_count": sample_rows,
    }
    failures: list[Failure] = []
    results = {}
    evaluated = 0
    for batch, suite in suites.items():
        frame = prepared.batches[batch]
        definition = _asset(context, suite.name).add_batch_definition_whole_dataframe(
            f"{suite.name}-{len(results)}-{id(frame)}"
        )
        gx_batch = definition.get_batch(batch_parameters={"dataframe": _pandas(frame)})
        result = gx_batch.validate(
            suite, result_format=result_format, expectation_parameters=dict(parameters or {})
        )
        results[batch] = result
        evaluated += len(result.results)
        failures += _failures(result, frame, batch, sample_rows)
    series = prepared.batches.get("series")
    coverage = None
    if series is not None and "coverage" in series.columns and series.height:
        coverage = float(series["coverage"].min())  # type: ignore[arg-type]
    return SuiteOutcome(
        name=name,
        success=not failures,
        rows=prepared.batches["rows"].height,
        evaluated=evaluated,
        failures=failures,
        coverage=coverage,
        gaps=prepared.gaps,
        series=series,
        results=results,
        suites=dict(suites),
    )
