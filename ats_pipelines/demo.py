"""`make demo`: the platform end to end on the local server, step by step.

Each step materialises its assets through Dagster (on the instance the UI uses, so the runs
show up there) and returns a few lines for the summary. Later work appends steps to ``STEPS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from ats_pipelines.config import Settings
from ats_pipelines.db.connect import connection
from ats_pipelines.db.inventory import markdown_table, table_summaries


@dataclass(frozen=True)
class DemoContext:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance

    def materialize(
        self, selection: str, partition_key: str | None = None
    ) -> dg.ExecuteInJobResult:
        """Materialise ``selection`` (an asset selection string) with the project's resources."""
        graph = self.defs.resolve_asset_graph()
        keys = dg.AssetSelection.from_string(selection).resolve(graph)
        assets = [a for a in self.defs.assets or [] if isinstance(a, dg.AssetsDefinition)
                  and set(a.keys) & keys]
        result = dg.materialize(assets, instance=self.instance,
                                resources=self.defs.resources, selection=list(keys),
                                partition_key=partition_key)
        if not result.success:
            raise RuntimeError(f"demo step failed: materialising {selection}")
        return result


@dataclass(frozen=True)
class DemoStep:
    name: str
    run: Callable[[DemoContext], list[str]]


def _platform(ctx: DemoContext) -> list[str]:
    result = ctx.materialize("key:database_schema")
    meta = result.asset_materializations_for_node("database_schema")[0].metadata
    edition = meta["edition"].value
    version = meta["timescaledb_version"].value
    return [f"edition: {edition} (timescaledb {version})"]


STEPS: list[DemoStep] = [DemoStep("platform", _platform)]


async def _inventory(url: str) -> str:
    async with connection(url) as conn:
        return markdown_table(await table_summaries(conn))


def demo_instance(settings: Settings) -> dg.DagsterInstance:
    from ats_pipelines.cli.dagster_cmd import dagster_home, dagster_storage_url

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home(settings)))
    os.environ["ATS_DAGSTER_PG_URL"] = dagster_storage_url(settings)
    return dg.DagsterInstance.get()


def run_demo(settings: Settings, echo: Callable[[str], None]) -> None:
    from ats_pipelines.definitions import defs

    with demo_instance(settings) as instance:
        ctx = DemoContext(settings=settings, defs=defs(), instance=instance)
        for step in STEPS:
            echo(f"== {step.name}")
            for line in step.run(ctx):
                echo(f"   {line}")
    echo("== tables")
    echo(asyncio.run(_inventory(settings.database_url)))
