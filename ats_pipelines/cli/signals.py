"""``ats signals run``: the live signal service (bar events -> analyzers -> coordinator)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run

Opt = typer.Option
log = logging.getLogger(__name__)
app = typer.Typer(help="The live signal service.", no_args_is_help=True)


@app.command("run")
def run_service(
    service_id: Annotated[
        str, Opt(help="Name of this service in signals.service_heartbeats.")
    ] = "signals",
    sweep_interval: Annotated[
        float, Opt(help="Seconds without events after which every series is looked at anyway.")
    ] = 30.0,
    heartbeat_interval: Annotated[float, Opt(help="Seconds between heartbeats.")] = 5.0,
    metrics_port: Annotated[
        int | None, Opt(help="Serve Prometheus /metrics on 127.0.0.1:PORT (0: any free port).")
    ] = None,
    no_events: Annotated[
        bool, Opt("--no-events", help="Do not read bar events (only the periodic sweep).")
    ] = False,
    duration: Annotated[float | None, Opt(help="Stop by itself after this many seconds.")] = None,
) -> None:
    """Analyse each closed bar as its commit event arrives, then coordinate; catches up from
    the watermarks first. Runs until SIGTERM or SIGINT, then exits 0."""
    from ats_pipelines.cache.server import CacheServerError, ensure_redis
    from ats_pipelines.config import load_settings
    from ats_pipelines.signals.config import load_signals_settings
    from ats_pipelines.signals.live import LiveConfig, SignalService, SignalServiceError

    settings = run(load_settings)
    signals = run(load_signals_settings)
    redis_url: str | None = None if no_events else settings.redis_url
    if redis_url is not None and settings.managed_redis:
        try:
            log.info("event=bar_events_redis %s", ensure_redis(settings))
        except CacheServerError as exc:
            log.warning("event=bar_events_unavailable error=%s (sweeps only)", exc)
            redis_url = None
    config = run(
        lambda: LiveConfig(
            database_url=settings.database_url,
            redis_url=redis_url,
            service_id=service_id,
            sweep_interval_s=sweep_interval,
            heartbeat_interval_s=heartbeat_interval,
            metrics_port=metrics_port,
            duration_s=duration,
        )
    )
    service = SignalService(signals, config, install_signal_handlers=True)
    try:
        summary = asyncio.run(service.run())
    except SignalServiceError as exc:
        fail(str(exc))
    typer.echo(
        f"signal service {config.service_id} stopped ({summary['stop_reason']}): "
        f"{summary['events']} events, {summary['runs']} analyzer runs, "
        f"{summary['signals']} signals, {summary['decisions']} decisions"
    )
