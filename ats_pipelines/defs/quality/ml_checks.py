"""Suites on the features, labels and predictions: blocking on features and labels (bad inputs
must not reach training), ERROR on predictions (what the signal consumers read)."""

from datetime import date, datetime, timedelta

import asyncpg
import dagster as dg

from ats_pipelines.features.catalog import FAMILIES, Family
from ats_pipelines.orchestration.checks import (
    CheckInputs,
    Evaluation,
    quality_check,
    suite_evaluation,
)
from ats_pipelines.orchestration.partitions import market_partitions
from ats_pipelines.orchestration.resources.features import LakeResource
from ats_pipelines.quality import catalog, loaders, validate
from ats_pipelines.quality.features_spec import LABEL_SPEC
from ats_pipelines.quality.lake_checks import check_feature_days, check_label_days, day_window
from ats_pipelines.warehouse.backfill import partition_days
from ats_pipelines.warehouse.config import MarketDataSettings


def _days(run: CheckInputs) -> tuple[dict[str, list[date]], tuple[datetime, datetime]]:
    """The run's days per symbol, and the window they span."""
    days = partition_days(run.pairs)
    return days, day_window([d for v in days.values() for d in v])


def build_feature_check(settings: MarketDataSettings, family: Family) -> dg.AssetChecksDefinition:
    """Great Expectations suite on the partition's features; blocks training on fail."""
    spec = catalog.FEATURES[family.name]

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        days, window = _days(run)
        lake: LakeResource = run.resource("lake")
        outcome = await check_feature_days(
            conn, lake.lake(), family, settings.exchange, days, run.quality.policy()
        )
        return suite_evaluation(spec, outcome, run.quality, window)

    return quality_check(
        spec, evaluate, partitions=market_partitions(settings), resources=("lake",)
    )


def build_labels_check(settings: MarketDataSettings) -> dg.AssetChecksDefinition:
    """Great Expectations suite on the partition's labels; blocks training on fail."""
    spec = catalog.LABELS

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        days, window = _days(run)
        lake: LakeResource = run.resource("lake")
        outcome = check_label_days(
            lake.lake(), LABEL_SPEC.dataset, settings.exchange, days, run.quality.policy()
        )
        return suite_evaluation(spec, outcome, run.quality, window)

    return quality_check(
        spec, evaluate, partitions=market_partitions(settings), resources=("lake",)
    )


def build_predictions_check() -> dg.AssetChecksDefinition:
    """Great Expectations suite on the predictions written in the recent window."""
    spec = catalog.SIGNALS

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        since = run.now - timedelta(hours=run.quality.predictions_window_hours)
        frame = await loaders.load_recent_signals(conn, since)
        outcome = validate.check_signals(frame, policy=run.quality.policy(), now=run.now)
        return suite_evaluation(spec, outcome, run.quality, (since, run.now))

    return quality_check(spec, evaluate)


def build_ml_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    return [
        *[build_feature_check(settings, f) for f in FAMILIES.values()],
        build_labels_check(settings),
        build_predictions_check(),
    ]
