"""Features assets: lake export, features per timeframe family, labels, Feast apply/materialise.

Built by :func:`build_assets` from the market-data settings (the same day x symbol partitions
as ``candles_1m``), so each day's export, features and labels line up with the candles that
made them. The logic lives in ``ats_pipelines.features``.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import BuildReport, build_features, build_labels
from ats_pipelines.features.export import ExportReport, export_partitions
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.orchestration.partitions import (
    DATE,
    SYMBOL,
    day_symbol_pairs,
    market_partitions,
)
from ats_pipelines.orchestration.resources.features import FeastResource, LakeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.backfill import partition_days
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.reports import markdown_table

GROUP = "features"
EXPORT = "market_parquet"
REGISTRY = "feast_registry"
ONLINE = "feast_online_store"


def _days(
    partitions: dg.MultiPartitionsDefinition, context: dg.AssetExecutionContext
) -> dict[str, list[date]]:
    return partition_days(day_symbol_pairs(partitions, context.partition_keys))


def _build_metadata(reports: Sequence[BuildReport]) -> dict[str, Any]:
    parts = [(r.symbol, p) for r in reports for p in r.partitions]
    return {
        "rows": sum(r.rows for r in reports),
        "files_written": sum(r.written for r in reports),
        "files_unchanged": sum(1 for _, p in parts if not p.written),
        "partitions": dg.MetadataValue.md(
            markdown_table(
                ("symbol", "day", "rows", "written", "sha256"),
                [
                    (
                        s,
                        p.day.isoformat(),
                        p.rows,
                        "yes" if p.written else "unchanged",
                        p.sha256[:12],
                    )
                    for s, p in parts
                ],
            )
        ),
    }


def _days_around(start_offset: int, end_offset: int) -> dg.MultiPartitionMapping:
    """Same symbol, days ``start_offset``..``end_offset`` around the partition's day."""
    return dg.MultiPartitionMapping(
        {
            DATE: dg.DimensionPartitionMapping(
                DATE,
                dg.TimeWindowPartitionMapping(
                    start_offset=start_offset,
                    end_offset=end_offset,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            SYMBOL: dg.DimensionPartitionMapping(SYMBOL, dg.IdentityPartitionMapping()),
        }
    )


def build_market_parquet(settings: MarketDataSettings) -> dg.AssetsDefinition:
    partitions = market_partitions(settings)
    upstream = [
        "candles_1m",
        *(f"candles_{tf}" for tf in settings.rollup_timeframes),
        "order_book_1m_agg",
    ]

    @dg.asset(
        name=EXPORT,
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=upstream,
        kinds={"timescaledb", "parquet"},
        automation_condition=dg.AutomationCondition.eager(),
    )
    def market_parquet(
        context: dg.AssetExecutionContext, timescale: TimescaleResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        """Candles of every timeframe and 1m book aggregates as Parquet; changed days only."""
        days = _days(partitions, context)
        target = lake.lake()

        async def body(conn: asyncpg.Connection) -> list[ExportReport]:
            return [
                await export_partitions(conn, target, settings.exchange, symbol, d)
                for symbol, d in days.items()
            ]

        reports = timescale.run(body)
        rows = [
            (r.symbol, d.dataset, len(d.exported), len(d.unchanged), len(d.removed), d.rows)
            for r in reports
            for d in r.datasets
        ]
        context.log.info(
            f"event=market_parquet exchange={settings.exchange} "
            f"symbols={','.join(days)} files_written="
            f"{sum(r.files_written for r in reports)}"
        )
        return dg.MaterializeResult(
            metadata={
                "root": str(target.root),
                "files_written": sum(r.files_written for r in reports),
                "rows_written": sum(r.rows_written for r in reports),
                "rollup_path": reports[0].mode if reports else "",
                "datasets": dg.MetadataValue.md(
                    markdown_table(
                        ("symbol", "dataset", "written", "unchanged", "removed", "rows"), rows
                    )
                ),
            }
        )

    return market_parquet


def build_family(settings: MarketDataSettings, family: cat.Family) -> dg.AssetsDefinition:
    partitions = market_partitions(settings)
    minute = family.timeframe == cat.BASE_TIMEFRAME
    # A 1-minute row of day D may carry a higher bar opened on D-1 (it closes on D).
    higher = [
        dg.AssetDep(cat.family_of(tf).name, partition_mapping=_days_around(-1, 0))
        for tf in cat.HIGHER_TIMEFRAMES
    ]
    deps: list[str | dg.AssetDep] = [EXPORT, *higher] if minute else [EXPORT]

    @dg.asset(
        name=family.name,
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        kinds={"duckdb", "polars", "parquet"},
        tags={"timeframe": family.timeframe},
        automation_condition=dg.AutomationCondition.eager(),
        description=(
            f"Features of closed {family.timeframe} bars per symbol-day "
            f"({len(family.features)} columns; event time = bar close)"
            + (
                "; with the order book, time of day and the latest closed 5m/15m/1h/4h bars"
                if minute
                else ""
            )
        ),
    )
    def features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        computed_at = datetime.now(UTC)
        reports = [
            build_features(lake.lake(), family, settings.exchange, symbol, d, computed_at)
            for symbol, d in _days(partitions, context).items()
        ]
        context.log.info(
            f"event={family.name} exchange={settings.exchange} "
            f"rows={sum(r.rows for r in reports)} "
            f"written={sum(r.written for r in reports)}"
        )
        return dg.MaterializeResult(
            metadata={**_build_metadata(reports), "feature_count": len(family.features)}
        )

    return features


class LabelsConfig(dg.Config):
    """Label parameters (defaults: ``LabelSpec``); a change rewrites the labels it covers."""

    horizon: int = LabelSpec.horizon
    threshold: float = LabelSpec.threshold
    take_profit: float = LabelSpec.take_profit
    stop_loss: float = LabelSpec.stop_loss


def build_labels_asset(settings: MarketDataSettings) -> dg.AssetsDefinition:
    partitions = market_partitions(settings)
    spec_name = LabelSpec.name

    @dg.asset(
        name=spec_name,
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # a day's labels look forward into the next day's bars
        deps=[dg.AssetDep(EXPORT, partition_mapping=_days_around(0, 1))],
        kinds={"polars", "parquet"},
        # eager over the last two days: a day's labels are finished once the next day lands
        automation_condition=dg.AutomationCondition.eager().replace(
            "in_latest_time_window",
            dg.AutomationCondition.in_latest_time_window(timedelta(days=2)),
        ),
    )
    def labels(
        context: dg.AssetExecutionContext, config: LabelsConfig, lake: LakeResource
    ) -> dg.MaterializeResult:
        """Forward-return and triple-barrier labels of 1m bars (kept apart from features)."""
        spec = LabelSpec(
            name=spec_name,
            horizon=config.horizon,
            threshold=config.threshold,
            take_profit=config.take_profit,
            stop_loss=config.stop_loss,
        )
        reports = [
            build_labels(lake.lake(), spec, settings.exchange, symbol, d)
            for symbol, d in _days(partitions, context).items()
        ]
        return dg.MaterializeResult(
            metadata={**_build_metadata(reports), "spec": dg.MetadataValue.json(spec.describe())}
        )

    return labels


def _when_missing_or_changed() -> dg.AutomationCondition:
    """Apply once when never applied, then whenever the definitions' code version changes."""
    trigger = dg.AutomationCondition.missing() | dg.AutomationCondition.code_version_changed()
    handled = (
        dg.AutomationCondition.newly_requested()
        | dg.AutomationCondition.newly_updated()
        | dg.AutomationCondition.initial_evaluation()
    )
    return trigger.since(handled) & ~dg.AutomationCondition.in_progress()


def build_feast_registry(lake_root: Path) -> dg.AssetsDefinition:
    @dg.asset(
        name=REGISTRY,
        group_name=GROUP,
        kinds={"feast"},
        code_version=cat.definitions_fingerprint(lake_root),
        automation_condition=_when_missing_or_changed(),
    )
    def feast_registry(
        context: dg.AssetExecutionContext, feast: FeastResource
    ) -> dg.MaterializeResult:
        """Feast definitions of feature_repo/ applied to the registry (feast apply)."""
        from ats_pipelines.features.store import apply_repo

        store = feast.store()
        result = apply_repo(store, feast.repo())
        context.log.info(
            f"event=feast_apply applied={len(result.applied)} "
            f"deleted={len(result.deleted)} unchanged={len(result.unchanged)}"
        )
        return dg.MaterializeResult(
            metadata={
                "applied": dg.MetadataValue.json(result.applied),
                "deleted": dg.MetadataValue.json(result.deleted),
                "unchanged": len(result.unchanged),
                "project": store.project,
            }
        )

    return feast_registry


def build_feast_online() -> dg.AssetsDefinition:
    # Eager without its "no missing dependency" clause: partitions of days never computed
    # must not hold the online store back from the days that were.
    after_new_features = (
        (
            dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )

    @dg.asset(
        name=ONLINE,
        group_name=GROUP,
        kinds={"feast", "sqlite"},
        deps=[REGISTRY, *cat.FAMILIES],
        automation_condition=after_new_features,
    )
    def feast_online_store(
        context: dg.AssetExecutionContext, feast: FeastResource
    ) -> dg.MaterializeResult:
        """Latest features materialised into the online store (materialize-incremental)."""
        from ats_pipelines.features.store import materialize_views

        results = materialize_views(feast.store(), list(cat.FAMILIES))
        return dg.MaterializeResult(
            metadata={
                "views": dg.MetadataValue.md(
                    markdown_table(
                        ("view", "mode", "from", "to"),
                        [
                            (
                                r.view,
                                r.mode,
                                r.start.isoformat() if r.start else "",
                                r.end.isoformat() if r.end else "",
                            )
                            for r in results
                        ],
                    )
                ),
            }
        )

    return feast_online_store


def build_assets(settings: MarketDataSettings, lake_root: Path) -> list[dg.AssetsDefinition]:
    return [
        build_market_parquet(settings),
        *(build_family(settings, f) for f in cat.FAMILIES.values()),
        build_labels_asset(settings),
        build_feast_registry(lake_root),
        build_feast_online(),
    ]
