"""Legacy cache migration: the inventory of files and one materialisation per file."""

from pathlib import Path

import asyncpg
import dagster as dg

from ats_pipelines.defs.migration.partitions import legacy_cache_files
from ats_pipelines.migration import ledger
from ats_pipelines.orchestration.migration import (
    PARTITIONS,
    PartitionResult,
    inventory_markdown,
    ledger_metadata,
    migrate_partition,
    partition_keys,
    root_report,
)
from ats_pipelines.orchestration.resources.legacy_cache import LegacyCacheResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource


@dg.asset(group_name="migration", kinds={"parquet"})
def legacy_cache_inventory(
    context: dg.AssetExecutionContext,
    timescale: TimescaleResource,
    legacy_cache: LegacyCacheResource,
) -> dg.MaterializeResult:
    """Files under the legacy cache root: a partition per file, unmatched listed, report written."""
    found = legacy_cache.discover()
    keys = partition_keys(found)
    known = set(context.instance.get_dynamic_partitions(PARTITIONS))
    new = [k for k in keys if k not in known]
    if new:
        context.instance.add_dynamic_partitions(PARTITIONS, new)

    async def record(conn: asyncpg.Connection) -> tuple[list[Path], str]:
        await ledger.record_unmatched(conn, str(found.root), found.unmatched)
        return await root_report(conn, found, legacy_cache.report_folder())

    paths, report = timescale.run(record)
    for u in found.unmatched:
        context.log.warning(f"event=migration_unmatched file={u.relative} reason={u.reason!r}")
    return dg.MaterializeResult(
        metadata={
            "root": str(found.root),
            "files": len(found.files),
            "new_partitions": len(new),
            "unmatched": len(found.unmatched),
            "unmatched_files": dg.MetadataValue.md(inventory_markdown(found)),
            "report": dg.MetadataValue.md(report),
            "report_path": dg.MetadataValue.path(str(paths[0])),
        }
    )


@dg.asset(
    group_name="migration",
    partitions_def=legacy_cache_files,
    deps=[legacy_cache_inventory],
    kinds={"parquet", "timescaledb"},
)
def migrated_cache_files(
    context: dg.AssetExecutionContext,
    timescale: TimescaleResource,
    legacy_cache: LegacyCacheResource,
) -> dg.MaterializeResult:
    """A legacy cache file loaded into TimescaleDB and verified; metadata is its ledger row."""
    key = context.partition_key

    async def body(conn: asyncpg.Connection) -> PartitionResult:
        return await migrate_partition(conn, legacy_cache, key)

    result = timescale.run(body)
    metadata = ledger_metadata(result.row) if result.row else {}
    if not result.ok:
        raise dg.Failure(description=f"{key}: {result.message}", metadata=metadata)
    context.log.info(
        f"event=migration_partition file={key} status={metadata.get('status')} "
        f"rows_inserted={metadata.get('rows_inserted')}"
    )
    return dg.MaterializeResult(metadata=metadata)
