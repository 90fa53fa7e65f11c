"""Jobs of the market-data domain: ingestion, gap repair, the gap check alone, history
aggregates, and retention."""

from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.defs.market_data.fanout import build_fanout_job
from ats_pipelines.orchestration.jobs import JobLike
from ats_pipelines.orchestration.partitions import market_partitions
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.reports import markdown_table
from ats_pipelines.warehouse.retention import TableAction, apply_retention

CANDLES = dg.AssetKey("candles_1m")
HISTORY = ("order_book_1s_agg", "order_book_1m_agg", "trade_flow_1m")
RUN_TAGS = {"ats/domain": "market_data"}  # the run queue's market-data limit (dagster.yaml)


def build_retention_job(settings: MarketDataSettings) -> dg.JobDefinition:
    @dg.op(name="apply_market_retention")
    def apply_market_retention(
        context: dg.OpExecutionContext, timescale: TimescaleResource
    ) -> dg.Output[list[dict[str, Any]]]:
        """Drops (or deletes) rows past each table's retention and compresses cold chunks."""

        async def body(conn: asyncpg.Connection) -> list[TableAction]:
            return await apply_retention(conn, settings.retention, settings.compression)

        actions = timescale.run(body)
        rows = [(a.table, a.kind, a.action, str(a.age), a.affected, a.note) for a in actions]
        context.log.info(
            "event=market_retention "
            + " ".join(f"{a.table}:{a.kind}={a.action}/{a.affected}" for a in actions)
        )
        return dg.Output(
            [a.__dict__ | {"age": str(a.age)} for a in actions],
            metadata={
                "tables": len({a.table for a in actions}),
                "chunks_dropped": sum(a.affected for a in actions if a.action == "drop_chunks"),
                "rows_deleted": sum(a.affected for a in actions if a.action == "delete"),
                "chunks_compressed": sum(
                    a.affected for a in actions if a.action == "compress_chunk"
                ),
                "actions": dg.MetadataValue.md(
                    markdown_table(("table", "kind", "action", "age", "affected", "note"), rows)
                ),
            },
        )

    @dg.job(
        name="market_data_retention_job",
        tags=RUN_TAGS,
        description="Apply the configured retention (and, with the timescale licence, "
        "compression) to the market tables.",
    )
    def market_data_retention_job() -> None:
        apply_market_retention()

    return market_data_retention_job


def build_jobs(settings: MarketDataSettings) -> list[JobLike]:
    partitions = market_partitions(settings)
    return [
        dg.define_asset_job(
            "candles_1m_job",
            selection=dg.AssetSelection.assets(CANDLES),
            partitions_def=partitions,
            tags=RUN_TAGS,
            description="Backfill 1-minute candles (one run per symbol range) and check gaps.",
        ),
        dg.define_asset_job(
            "candles_1m_repair_job",
            selection=dg.AssetSelection.assets(CANDLES),
            partitions_def=partitions,
            config={"ops": {"candles_1m": {"config": {"repair_only": True}}}},
            tags=RUN_TAGS,
            description="Re-fetch exactly the missing minutes of candle partitions, then "
            "re-check them.",
        ),
        dg.define_asset_job(
            "candles_1m_gap_check_job",
            selection=dg.AssetSelection.checks_for_assets(CANDLES),
            partitions_def=partitions,
            tags=RUN_TAGS,
            description="Run only the missing-minutes check of candle partitions.",
        ),
        dg.define_asset_job(
            "market_history_job",
            selection=dg.AssetSelection.assets(*HISTORY),
            partitions_def=partitions,
            tags=RUN_TAGS,
            description="Aggregate stored order-book snapshots and trades of days × symbols.",
        ),
        build_retention_job(settings),
        build_fanout_job(settings),
    ]
