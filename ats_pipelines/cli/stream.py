"""``ats stream``: the streaming service (trades and books -> bars, metrics, snapshots)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run

Opt = typer.Option
log = logging.getLogger(__name__)


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def stream(
    symbols: Annotated[
        str | None, Opt(help="Comma-separated ccxt symbols (default: ATS_SYMBOLS).")
    ] = None,
    timeframes: Annotated[
        str,
        Opt(
            help="Comma-separated bar timeframes, the smallest built "
            "from trades, the rest rolled up."
        ),
    ] = "1m,5m,15m,1h,4h,1d",
    shard: Annotated[
        str, Opt(help="i/n: stream the i-th of n shares of the symbols (one process each).")
    ] = "0/1",
    exchange: Annotated[str | None, Opt(help="ccxt exchange id (default: ATS_EXCHANGE).")] = None,
    exchange_url: Annotated[
        str | None,
        Opt(
            help="REST base replacing the exchange's hosts, "
            "e.g. the emulator (default: "
            "ATS_EXCHANGE_URL)."
        ),
    ] = None,
    store_as: Annotated[
        str | None, Opt(help="Exchange name stored rows carry (default: the exchange id).")
    ] = None,
    grace_ms: Annotated[
        int,
        Opt(
            help="A bar closes this long (exchange time) after its "
            "end; later trades are quarantined as late."
        ),
    ] = 2_000,
    snapshot_interval: Annotated[float, Opt(help="Seconds between stored book snapshots.")] = 1.0,
    book_levels: Annotated[int, Opt(help="Levels per side in stored book snapshots.")] = 20,
    no_books: Annotated[bool, Opt("--no-books", help="Do not watch order books.")] = False,
    no_cache: Annotated[bool, Opt("--no-cache", help="Do not write the Redis hot cache.")] = False,
    metrics_port: Annotated[
        int | None, Opt(help="Serve Prometheus /metrics on 127.0.0.1:PORT (0: any free port).")
    ] = None,
    heal_interval: Annotated[float, Opt(help="Seconds between periodic heal passes.")] = 300.0,
    duration: Annotated[float | None, Opt(help="Stop by itself after this many seconds.")] = None,
) -> None:
    """Stream trades and order books into bars, book metrics and snapshots until SIGTERM or
    SIGINT, which flush every queue and save the open bars, then exit 0."""
    from ats_pipelines.cache.server import CacheServerError, ensure_redis
    from ats_pipelines.config import load_settings
    from ats_pipelines.streaming.config import load_stream_config
    from ats_pipelines.streaming.service import StreamService, StreamServiceError

    settings = run(load_settings)
    config = run(
        lambda: load_stream_config(
            shard=shard,
            symbols=_csv(symbols),
            timeframes=_csv(timeframes),
            exchange=exchange,
            exchange_url=exchange_url,
            store_as=store_as,
            grace_ms=grace_ms,
            snapshot_interval_s=snapshot_interval,
            book_levels=book_levels,
            watch_books=not no_books,
            metrics_port=metrics_port,
            heal_interval_s=heal_interval,
            duration_s=duration,
        )
    )
    if no_cache:
        config = config.replace(redis_url=None)
    elif settings.managed_redis:
        try:
            log.info("event=hot_cache %s", ensure_redis(settings))
        except CacheServerError as exc:
            log.warning("event=hot_cache_unavailable error=%s (streaming without it)", exc)
    service = StreamService(config, install_signal_handlers=True)
    try:
        summary = asyncio.run(service.run())
    except StreamServiceError as exc:
        fail(str(exc))
    typer.echo(
        f"stream {config.shard} stopped ({summary['stop_reason']}): "
        f"{summary['trades']['applied']} trades, "
        f"{summary['lanes']['bars']['committed_rows']} bar rows committed"
    )
