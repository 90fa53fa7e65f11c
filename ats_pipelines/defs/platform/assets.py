"""The database schema as an asset: materialising it applies pending migrations."""

import asyncpg
import dagster as dg

from ats_pipelines.db.inventory import markdown_table, table_summaries
from ats_pipelines.db.migrate import MigrationReport, migrate
from ats_pipelines.orchestration.resources.timescale import TimescaleResource


@dg.asset(group_name="platform", kinds={"postgres", "timescaledb"})
def database_schema(
    context: dg.AssetExecutionContext, timescale: TimescaleResource
) -> dg.MaterializeResult:
    """The platform's tables in TimescaleDB, brought up to date by the migration runner."""

    async def body(conn: asyncpg.Connection) -> tuple[MigrationReport, str, int]:
        report = await migrate(conn)
        tables = await table_summaries(conn)
        return report, markdown_table(tables), len(tables)

    report, tables_md, n_tables = timescale.run(body)
    for name, fallback in report.degradations.items():
        context.log.info(f"event=edition_degradation file={name} fallback={fallback!r}")
    return dg.MaterializeResult(
        metadata={
            "server": timescale.address,
            "edition": report.edition,
            "timescaledb_version": report.timescaledb_version or "not installed",
            "applied_now": report.applied,
            "already_applied": len(report.unchanged),
            "degraded": dg.MetadataValue.json(report.degradations),
            "tables": n_tables,
            "table_inventory": dg.MetadataValue.md(tables_md),
        }
    )
