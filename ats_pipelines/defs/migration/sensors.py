"""New or changed legacy cache files become partitions and get a migration run."""

import json

import dagster as dg

from ats_pipelines.defs.migration.assets import migrated_cache_files
from ats_pipelines.defs.migration.partitions import legacy_cache_files
from ats_pipelines.orchestration.migration import PARTITIONS, file_signature, partition_keys
from ats_pipelines.orchestration.resources.legacy_cache import LegacyCacheResource

migrate_cache_files_job = dg.define_asset_job(
    "migrate_cache_files_job",
    selection=[migrated_cache_files],
    partitions_def=legacy_cache_files,
    description="Migrate legacy cache files (one run per file partition).",
)


@dg.sensor(
    job=migrate_cache_files_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def legacy_cache_sensor(
    context: dg.SensorEvaluationContext, legacy_cache: LegacyCacheResource
) -> dg.SensorResult:
    """Registers a partition per new cache file and requests a run for new or changed files."""
    found = legacy_cache.discover()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    keys = set(partition_keys(found))
    known = set(context.instance.get_dynamic_partitions(PARTITIONS))
    requests, current = [], {}
    for file in found.files:
        if file.relative not in keys:
            continue
        signature = file_signature(file)
        current[file.relative] = signature
        if seen.get(file.relative) != signature:
            requests.append(
                dg.RunRequest(partition_key=file.relative, run_key=f"{file.relative}@{signature}")
            )
    new = sorted(keys - known)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[legacy_cache_files.build_add_request(new)] if new else [],
        cursor=json.dumps(current, sort_keys=True),
    )
