"""The one skeleton of the quality asset checks: a rule evaluated on a database connection, the
evaluation recorded in ``ops.quality_check_runs`` (the report's trend), and the Dagster result.

A check is its :class:`~ats_pipelines.quality.catalog.CheckSpec` (asset, name, blocking,
severity, description) plus an ``evaluate`` coroutine; :func:`quality_check` adds the decorator,
the run's partition keys, the connection and the record, so the check modules say only what
they check.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.check_results import (
    outcome_failures,
    reconciliation_metadata,
    record,
    severity,
    suite_result,
)
from ats_pipelines.orchestration.partitions import day_symbol_pairs, run_partition_keys
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.reconcile import Reconciliation
from ats_pipelines.quality.runner import SuiteOutcome

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class CheckInputs:
    """What a check's ``evaluate`` gets: the run, its resources, its partitions, the time."""

    context: dg.AssetCheckExecutionContext
    quality: QualityResource
    keys: list[str]  # the run's partition keys; empty for an unpartitioned check
    pairs: list[tuple[str, str]]  # (day, symbol) of those keys
    now: datetime

    @property
    def label(self) -> str:
        """The partitions as recorded: one key, ``first..last``, or "" when unpartitioned."""
        if not self.keys:
            return ""
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}..{self.keys[-1]}"

    @property
    def symbols(self) -> list[str]:
        return sorted({s for _, s in self.pairs})

    def resource(self, key: str) -> Any:
        """A resource the check declared in ``quality_check(resources=...)``."""
        return getattr(self.context.resources, key)


@dataclass(frozen=True)
class Evaluation:
    """A check's verdict: the result Dagster shows and the row ``ops.quality_check_runs`` keeps."""

    result: dg.AssetCheckResult
    rows: int
    window: Window | None
    failed: list[dict[str, Any]] = field(default_factory=list)
    coverage: float | None = None
    log: str | None = None  # an event= line for the run's log


def suite_evaluation(
    spec: CheckSpec,
    outcome: SuiteOutcome,
    quality: QualityResource,
    window: Window | None,
    coverage: float | None = None,
) -> Evaluation:
    """A Great Expectations suite's outcome as an evaluation."""
    return Evaluation(
        result=suite_result(spec, outcome, quality),
        rows=outcome.rows,
        window=window,
        failed=outcome_failures(outcome),
        coverage=coverage,
    )


def reconciliation_evaluation(
    spec: CheckSpec, result: Reconciliation, quality: QualityResource, window: Window
) -> Evaluation:
    """Two sources compared, as an evaluation (WARN or ERROR by the spec's severity)."""
    return Evaluation(
        result=dg.AssetCheckResult(
            passed=result.passed,
            severity=severity(spec),
            description=result.summary(),
            metadata=reconciliation_metadata(result, quality),
        ),
        rows=result.compared,
        window=window,
        failed=[]
        if result.passed
        else [{"rule": result.rule, "rows": result.disagreements.height}],
    )


Evaluate = Callable[[CheckInputs, asyncpg.Connection], Awaitable[Evaluation]]


def quality_check(
    spec: CheckSpec,
    evaluate: Evaluate,
    *,
    partitions: dg.MultiPartitionsDefinition | None = None,
    resources: Iterable[str] = (),
    blocking: bool | None = None,
) -> dg.AssetChecksDefinition:
    """The asset check of ``spec``: ``evaluate`` on a ``timescale`` connection, recorded, shown.

    ``resources`` names what ``evaluate`` needs besides ``timescale`` and ``quality``;
    ``blocking`` overrides the spec's (the reconciliation checks never block).
    """

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking if blocking is None else blocking,
        partitions_def=partitions,
        description=spec.description,
        required_resource_keys={"timescale", "quality", *resources},
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        keys = run_partition_keys(context, partitions) if partitions is not None else []
        pairs = day_symbol_pairs(partitions, keys) if partitions is not None else []
        quality: QualityResource = context.resources.quality
        inputs = CheckInputs(context, quality, keys, pairs, datetime.now(UTC))

        async def body(conn: asyncpg.Connection) -> Evaluation:
            evaluation = await evaluate(inputs, conn)
            await record(
                conn,
                context,
                spec,
                passed=evaluation.result.passed,
                partition=inputs.label,
                rows=evaluation.rows,
                window=evaluation.window,
                coverage=evaluation.coverage,
                failed=evaluation.failed,
            )
            return evaluation

        evaluation = context.resources.timescale.run(body)
        if evaluation.log:
            context.log.info(evaluation.log)
        return evaluation.result

    return check
