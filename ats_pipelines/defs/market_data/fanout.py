"""A backfill of many candle partitions fanned out over worker processes, one step each.

``candles_1m``'s own backfills are one ranged run (``BackfillPolicy.single_run``): cheapest on
one machine. When a backfill should spread over machines, ``candles_1m_fanout_job`` maps each
requested partition to its own step (a dynamic output per key), and its executor places the
steps: the multiprocess executor here, or Celery workers (``ATS_BACKFILL_EXECUTOR=celery``,
broker ``ATS_CELERY_BROKER_URL``: the project's Redis) — each started with
``dagster-celery worker start -A dagster_celery.app -y <config>``. Each step writes its partition
with the same code as the asset (idempotent) and records a ``candles_1m`` materialization of it.

Celery rather than dagster-dask: a fan-out over partitions is a dynamic mapping, which the
Celery executor schedules as steps appear while the Dask executor plans every step up front
and cannot run it; and Celery's broker is the Redis the platform already runs.
"""

import os
import re
import socket
from collections.abc import Iterator
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.config import load_settings
from ats_pipelines.orchestration.partitions import day_symbol_pairs, market_partitions
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.backfill import BackfillReport, backfill, partition_days
from ats_pipelines.warehouse.config import MarketDataSettings

CANDLES = dg.AssetKey("candles_1m")
JOB = "candles_1m_fanout_job"


class FanoutConfig(dg.Config):
    """The partitions to backfill, as ``candles_1m`` keys (``2024-05-01|BTC/USDT``)."""

    partition_keys: list[str]


def fanout_executor(name: str) -> dg.ExecutorDefinition:
    if name == "celery":
        from dagster_celery import celery_executor

        broker = {"env": "ATS_CELERY_BROKER_URL"}
        return celery_executor.configured({"broker": broker, "backend": broker})
    return dg.multiprocess_executor


def build_fanout_job(settings: MarketDataSettings) -> dg.JobDefinition:
    partitions = market_partitions(settings)

    @dg.op(out=dg.DynamicOut(str))
    def plan_candle_partitions(config: FanoutConfig) -> Iterator[dg.DynamicOutput[str]]:
        """One dynamic output per requested partition, each key once."""
        known = set(partitions.get_partition_keys())
        unknown = [k for k in config.partition_keys if k not in known]
        if unknown:
            raise dg.Failure(f"not candles_1m partitions: {', '.join(unknown[:5])}")
        for key in dict.fromkeys(config.partition_keys):
            yield dg.DynamicOutput(key, mapping_key=re.sub(r"[^A-Za-z0-9_]", "_", key))

    @dg.op
    def backfill_candle_partition(
        context: dg.OpExecutionContext,
        key: str,
        timescale: TimescaleResource,
        exchange: ExchangeResource,
    ) -> dict[str, Any]:
        """Fetch, validate and store one partition's candles; record its materialization."""
        days = partition_days(day_symbol_pairs(partitions, [key]))

        async def body(conn: asyncpg.Connection) -> BackfillReport:
            async with exchange.open() as client:
                return await backfill(conn, client, exchange=settings.exchange, days_by_symbol=days)

        report = timescale.run(body)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        done = {
            "partition": key,
            "worker": worker,
            "fetched": report.fetched,
            "missing_minutes": report.missing_minutes,
        }
        context.log_event(dg.AssetMaterialization(asset_key=CANDLES, partition=key, metadata=done))
        return done

    @dg.op
    def summarise_fanout(results: list[dict[str, Any]]) -> dg.Output[list[dict[str, Any]]]:
        """How many partitions ran, on how many workers."""
        workers = sorted({r["worker"] for r in results})
        return dg.Output(
            results,
            metadata={"partitions": len(results), "workers": dg.MetadataValue.json(workers)},
        )

    @dg.job(
        name=JOB,
        executor_def=fanout_executor(load_settings().backfill_executor),
        tags={"ats/domain": "market_data"},
        description="Backfill the given candle partitions, one step each, spread over the "
        "executor's workers (Celery with ATS_BACKFILL_EXECUTOR=celery).",
    )
    def candles_1m_fanout_job() -> None:
        summarise_fanout(plan_candle_partitions().map(backfill_candle_partition).collect())

    return candles_1m_fanout_job
