"""The streaming service as a Dagster job: launch it from the UI, it runs until terminated.

Terminating the run interrupts the run worker (SIGINT/SIGTERM); the service's own handlers
catch it, flush every queue and save the open bars, and the op then reports the interruption
so the run ends as cancelled rather than failed. ``duration_s`` makes a bounded run (demos).
"""

import asyncio
from pathlib import Path

import dagster as dg
from pydantic import Field

from ats_pipelines.lib.timeframes import DEFAULT_TIMEFRAMES
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.stream import StreamResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.streaming.config import StreamConfig, parse_shard, shard_symbols
from ats_pipelines.streaming.service import StreamService, StreamServiceError
from ats_pipelines.universe import load_universe

STREAM_RUN_RETRIES = 1000  # a long-running service: effectively "always restart"


class StreamRunConfig(dg.Config):
    """What this run streams (the environment's ATS_SYMBOLS when ``symbols`` is empty)."""

    symbols: list[str] = Field(default_factory=list)
    timeframes: list[str] = Field(default_factory=lambda: list(DEFAULT_TIMEFRAMES))
    shard: str = "0/1"
    store_as: str | None = None
    grace_ms: int = 2_000
    watch_books: bool = True
    heal_interval_s: float = 300.0
    duration_s: float | None = None  # None: until the run is terminated


def stream_config(
    config: StreamRunConfig,
    timescale: TimescaleResource,
    exchange: ExchangeResource,
    stream: StreamResource,
) -> StreamConfig:
    symbols = config.symbols or list(load_universe().symbols)
    index, count = parse_shard(config.shard)
    return StreamConfig(
        database_url=timescale.url,
        symbols=shard_symbols(symbols, index, count),
        shard_index=index,
        shard_count=count,
        exchange=exchange.exchange_id,
        exchange_url=exchange.rest_url,
        api_key=exchange.api_key,
        secret=exchange.secret,
        timeframes=tuple(config.timeframes),
        store_as=config.store_as,
        grace_ms=config.grace_ms,
        watch_books=config.watch_books,
        heal_interval_s=config.heal_interval_s,
        duration_s=config.duration_s,
        redis_url=stream.url,
        metrics_port=stream.metrics_port,
        spill_dir=Path(stream.state_dir) / "stream" / "spill",
        reconnect_base_s=exchange.backoff_base_s,
        reconnect_max_s=exchange.backoff_max_s,
        reconnect_max_failures=exchange.stream_max_failures,
    )


@dg.op(description="Runs the streaming service until the run is terminated (or duration_s).")
def run_stream_service(
    context: dg.OpExecutionContext,
    config: StreamRunConfig,
    timescale: TimescaleResource,
    exchange: ExchangeResource,
    stream: StreamResource,
) -> dg.Output[dict]:
    """Streams trades and books into bars, metrics and snapshots; flushes on termination."""
    settings = stream_config(config, timescale, exchange, stream)
    context.log.info(
        f"event=stream_run shard={settings.shard} symbols={','.join(settings.symbols)}"
        f" database={timescale.address}"
    )
    service = StreamService(settings, install_signal_handlers=True)
    try:
        summary = asyncio.run(service.run())
    except StreamServiceError as exc:
        raise dg.Failure(str(exc)) from exc
    if service.stop_reason in ("SIGINT", "SIGTERM"):
        context.log.info(f"event=stream_terminated flushed summary={summary}")
        raise dg.DagsterExecutionInterruptedError(
            f"streaming run terminated ({service.stop_reason}); queues flushed, state saved"
        )
    lanes = summary["lanes"]
    return dg.Output(
        summary,
        metadata={
            "shard": settings.shard,
            "trades_applied": summary["trades"]["applied"],
            "trades_late": summary["trades"]["late"],
            "bar_rows_committed": lanes["bars"]["committed_rows"],
            "bulk_rows_committed": lanes["bulk"]["committed_rows"],
            "reconnects": dg.MetadataValue.json(summary["reconnects"]),
            "latency": dg.MetadataValue.json(summary["latency"]),
            "stop_reason": str(summary["stop_reason"]),
        },
    )


@dg.job(
    description="The streaming service (`ats stream`) as a long-running run: websocket "
    "trades and books -> bars, book metrics, snapshots; until terminated.",
    # in-process: the service lives in the run worker itself, so the worker's death is the
    # service's death (no orphaned step process streaming on); a dead worker fails the run and
    # run retries start it again (dagster.yaml), resuming from the saved bars and healing the gap.
    executor_def=dg.in_process_executor,
    tags={
        "ats/long_running": "true",
        "ats/domain": "streaming",
        # a run whose worker died (killed, out of memory) is relaunched by Dagster's run
        # retries; an op failure — the service ends only on a configuration error — is not
        "dagster/max_retries": str(STREAM_RUN_RETRIES),
        "dagster/retry_on_asset_or_op_failure": "false",
        "dagster/retry_strategy": "ALL_STEPS",
    },
)
def streaming_service_job() -> None:
    run_stream_service()
