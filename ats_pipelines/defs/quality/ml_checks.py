"""Suites on the features, labels and predictions: blocking on features and labels (bad inputs
must not reach training), ERROR on predictions (what the signal consumers read)."""

from datetime import UTC, datetime, timedelta

import asyncpg
import dagster as dg

from ats_pipelines.features.catalog import FAMILIES, Family
from ats_pipelines.orchestration.check_results import outcome_failures, record, suite_result
from ats_pipelines.orchestration.partitions import (
    day_symbol_pairs,
    market_partitions,
    run_partition_keys,
)
from ats_pipelines.orchestration.resources.features import LakeResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.quality import catalog, loaders, validate
from ats_pipelines.quality.features_spec import LABEL_SPEC
from ats_pipelines.quality.lake_checks import check_feature_days, check_label_days, day_window
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.warehouse.backfill import partition_days
from ats_pipelines.warehouse.config import MarketDataSettings


def _label(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def build_feature_check(settings: MarketDataSettings, family: Family) -> dg.AssetChecksDefinition:
    partitions = market_partitions(settings)
    spec = catalog.FEATURES[family.name]

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        partitions_def=partitions,
        description=spec.description,
    )
    def features_suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        lake: LakeResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Great Expectations suite on the partition's features; blocks training on fail."""
        keys = run_partition_keys(context, partitions)
        days = partition_days(day_symbol_pairs(partitions, keys))

        async def body(conn: asyncpg.Connection) -> SuiteOutcome:
            outcome = await check_feature_days(
                conn, lake.lake(), family, settings.exchange, days, quality.policy()
            )
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition=_label(keys),
                rows=outcome.rows,
                window=day_window([d for v in days.values() for d in v]),
                failed=outcome_failures(outcome),
            )
            return outcome

        return suite_result(spec, timescale.run(body), quality)

    return features_suite


def build_labels_check(settings: MarketDataSettings) -> dg.AssetChecksDefinition:
    partitions = market_partitions(settings)
    spec = catalog.LABELS

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        partitions_def=partitions,
        description=spec.description,
    )
    def labels_suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        lake: LakeResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Great Expectations suite on the partition's labels; blocks training on fail."""
        keys = run_partition_keys(context, partitions)
        days = partition_days(day_symbol_pairs(partitions, keys))
        outcome = check_label_days(
            lake.lake(), LABEL_SPEC.dataset, settings.exchange, days, quality.policy()
        )

        async def body(conn: asyncpg.Connection) -> None:
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition=_label(keys),
                rows=outcome.rows,
                window=day_window([d for v in days.values() for d in v]),
                failed=outcome_failures(outcome),
            )

        timescale.run(body)
        return suite_result(spec, outcome, quality)

    return labels_suite


def build_predictions_check() -> dg.AssetChecksDefinition:
    spec = catalog.SIGNALS

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        description=spec.description,
    )
    def predictions_suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Great Expectations suite on the predictions written in the recent window."""
        now = datetime.now(UTC)
        since = now - timedelta(hours=quality.predictions_window_hours)

        async def body(conn: asyncpg.Connection) -> SuiteOutcome:
            frame = await loaders.load_recent_signals(conn, since)
            outcome = validate.check_signals(frame, policy=quality.policy(), now=now)
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition="",
                rows=outcome.rows,
                window=(since, now),
                failed=outcome_failures(outcome),
            )
            return outcome

        return suite_result(spec, timescale.run(body), quality)

    return predictions_suite


def build_ml_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    return [
        *[build_feature_check(settings, f) for f in FAMILIES.values()],
        build_labels_check(settings),
        build_predictions_check(),
    ]
