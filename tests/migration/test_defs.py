"""The migration's Dagster definitions: one partition per file, ledger row as metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from ats_pipelines.defs.migration.assets import legacy_cache_inventory, migrated_cache_files
from ats_pipelines.defs.migration.partitions import legacy_cache_files
from ats_pipelines.defs.migration.sensors import legacy_cache_sensor
from ats_pipelines.orchestration.migration import PARTITIONS
from ats_pipelines.orchestration.resources.legacy_cache import LegacyCacheResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource

pytestmark = pytest.mark.integration


def test_migration_definitions_resolve() -> None:
    """The folder's assets, job and sensor resolve against its resources (the whole code
    location's load is tests/test_definitions.py's job)."""
    from ats_pipelines.defs.migration.sensors import migrate_cache_files_job
    from ats_pipelines.defs.resources import build_resources

    provided = build_resources()
    definitions = dg.Definitions(
        assets=[legacy_cache_inventory, migrated_cache_files],
        jobs=[migrate_cache_files_job],
        sensors=[legacy_cache_sensor],
        resources={
            "legacy_cache": provided["legacy_cache"],
            "timescale": TimescaleResource(database_url="postgresql://x/y"),
        },
    )
    assert isinstance(provided["legacy_cache"], LegacyCacheResource)
    job = definitions.resolve_job_def("migrate_cache_files_job")
    assert job.partitions_def == legacy_cache_files
    assert definitions.resolve_sensor_def("legacy_cache_sensor").job_name == job.name


@pytest.fixture
def dagster_cache(testdata: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    (root / "futures").mkdir(parents=True)
    shutil.copy(testdata / "freqtrade" / "XRP_ETH-5m.feather", root / "XRP_ETH-5m.feather")
    shutil.copy(
        testdata / "freqtrade" / "futures" / "XRP_USDT_USDT-8h-mark.feather",
        root / "futures" / "XRP_USDT_USDT-8h-mark.feather",
    )
    (root / "futures" / "XRP_USDT_USDT-8h-mark.feather.bak").write_bytes(b"")
    return root


def test_inventory_partitions_and_materialisation(
    fresh_db: str, dagster_cache: Path, tmp_path: Path
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    reports = tmp_path / "reports"
    resources = {
        "timescale": TimescaleResource(database_url=fresh_db),
        "legacy_cache": LegacyCacheResource(root=str(dagster_cache), reports_dir=str(reports)),
    }
    inventory = dg.materialize([legacy_cache_inventory], instance=instance, resources=resources)
    assert inventory.success
    meta = inventory.asset_materializations_for_node("legacy_cache_inventory")[0].metadata
    assert (meta["files"].value, meta["new_partitions"].value, meta["unmatched"].value) == (2, 2, 1)
    keys = instance.get_dynamic_partitions(PARTITIONS)
    assert sorted(keys) == ["XRP_ETH-5m.feather", "futures/XRP_USDT_USDT-8h-mark.feather"]

    run = dg.materialize(
        [migrated_cache_files],
        instance=instance,
        resources=resources,
        partition_key="futures/XRP_USDT_USDT-8h-mark.feather",
    )
    assert run.success
    [event] = run.asset_materializations_for_node("migrated_cache_files")
    assert event.partition == "futures/XRP_USDT_USDT-8h-mark.feather"
    md = event.metadata
    assert md["status"].value == "verified"
    assert (md["rows_read"].value, md["rows_inserted"].value) == (91, 91)
    assert md["checksums_match"].value is True
    ledger_row = md["ledger_row"].value
    assert isinstance(ledger_row, dict) and ledger_row["price_type"] == "mark"

    # the inventory's report now lists the migrated file
    dg.materialize([legacy_cache_inventory], instance=instance, resources=resources)
    report = (reports / "migration" / "root-cache.md").read_text()
    assert "| futures/XRP_USDT_USDT-8h-mark.feather | reference_candles |" in report
    assert "XRP_USDT_USDT-8h-mark.feather.bak" in report  # listed as unmatched

    # materialising the same partition again inserts nothing
    again = dg.materialize(
        [migrated_cache_files],
        instance=instance,
        resources=resources,
        partition_key="futures/XRP_USDT_USDT-8h-mark.feather",
    )
    [event] = again.asset_materializations_for_node("migrated_cache_files")
    assert event.metadata["batch_id"].value == md["batch_id"].value


def test_broken_file_fails_its_partition(fresh_db: str, dagster_cache: Path) -> None:
    broken = dagster_cache / "XRP_ETH-5m.feather"
    broken.write_bytes(broken.read_bytes()[:4000])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS, ["XRP_ETH-5m.feather"])
    resources = {
        "timescale": TimescaleResource(database_url=fresh_db),
        "legacy_cache": LegacyCacheResource(root=str(dagster_cache)),
    }
    run = dg.materialize(
        [migrated_cache_files],
        instance=instance,
        resources=resources,
        partition_key="XRP_ETH-5m.feather",
        raise_on_error=False,
    )
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert "load failed: CorruptFileError" in str(failure.event_specific_data)


def test_sensor_registers_new_files_and_requests_runs_once(dagster_cache: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = {"legacy_cache": LegacyCacheResource(root=str(dagster_cache))}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    first = legacy_cache_sensor(context)
    assert isinstance(first, dg.SensorResult)
    assert sorted(str(r.partition_key) for r in first.run_requests or []) == [
        "XRP_ETH-5m.feather",
        "futures/XRP_USDT_USDT-8h-mark.feather",
    ]
    [add] = first.dynamic_partitions_requests or []
    assert sorted(add.partition_keys or []) == sorted(
        str(r.partition_key) for r in first.run_requests or []
    )
    instance.add_dynamic_partitions(PARTITIONS, list(add.partition_keys or []))
    second = legacy_cache_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
    )
    assert isinstance(second, dg.SensorResult)
    assert not second.run_requests and not second.dynamic_partitions_requests
