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


def _rollup_selection(ctx: DemoContext) -> str | None:
    """The candle rollups' asset keys (one multi-asset, materialised whole), if defined."""
    for asset in ctx.defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey("candles_5m") in asset.keys:
            return " or ".join(f"key:{k.to_user_string()}" for k in sorted(asset.keys))
    return None


def _signals(ctx: DemoContext) -> list[str]:
    """Analyzers and coordinator over the bars stored so far (run after the market-data step:
    the rollups are brought up to date first, the analyzers read every closed bar)."""
    rollups = _rollup_selection(ctx)
    if rollups:
        ctx.materialize(rollups)
    detected = ctx.materialize("key:detected_signals")
    meta = detected.asset_materializations_for_node("detected_signals")[0].metadata
    counts = meta["counts_by_timeframe"].value
    assert isinstance(counts, dict)
    lines = [f"analyzed {meta['bars_analysed'].value} new bars, wrote "
             f"{meta['signals_written'].value} signals ({meta['signals_total'].value} stored)"]
    lines += [f"  {tf}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
              for tf, kinds in counts.items()]
    lines += ["latest signals:", *_table_lines(str(meta["latest"].value), 5)]
    coordinated = ctx.materialize("key:coordinated_signals")
    meta = coordinated.asset_materializations_for_node("coordinated_signals")[0].metadata
    lines += [f"coordinator wrote {meta['decisions_written'].value} decisions "
              f"({meta['signals_waiting'].value} signals waiting for final timeframes)",
              *_table_lines(str(meta["counts"].value), 10),
              "last decision per symbol:",
              *_table_lines(str(meta["latest_per_symbol"].value), 10)]
    return lines


def _table_lines(markdown: str, limit: int) -> list[str]:
    rows = [line for line in markdown.splitlines() if not line.startswith("|--")]
    return ["  " + line for line in rows[: limit + 1]]


STEPS: list[DemoStep] = [DemoStep("platform", _platform)]
# Later steps go before this one: it shows the signals of the bars the steps above stored.
STEPS.append(DemoStep("signals", _signals))


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
