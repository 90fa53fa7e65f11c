"""``ats emulator``: the Binance-protocol exchange emulator (and Birdeye API) on loopback."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail


def _start_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--start {text!r} is not an ISO 8601 time (e.g. 2024-05-01T00:00:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


Opt = typer.Option


def emulator(
    port: Annotated[int, Opt(help="TCP port to listen on (0: any free port).")] = 8765,
    host: Annotated[
        str, Opt(help="Loopback address to bind: 127.0.0.1 or ::1. Any other address is refused.")
    ] = "127.0.0.1",
    data: Annotated[
        Path | None,
        Opt(
            "--data",
            help="Replay the recorded market data in this directory (layout of "
            "../shared/testdata) instead of the synthetic market.",
        ),
    ] = None,
    synthetic: Annotated[
        bool | None,
        Opt(
            "--synthetic/--no-synthetic",
            help="Serve the synthetic market (default: on unless "
            "--data is given; recorded symbols win clashes).",
        ),
    ] = None,
    speed: Annotated[
        float,
        Opt(
            help="Exchange time runs this many times faster than the wall "
            "clock (replays too); 0 replays --data as fast as "
            "possible."
        ),
    ] = 1.0,
    seed: Annotated[
        int, Opt(help="Seed of the synthetic market (same seed and --start: same market).")
    ] = 7,
    symbols: Annotated[
        int, Opt(help="Number of synthetic symbols: 12 named majors, then SYNnnn/USDT markets.")
    ] = 12,
    history_days: Annotated[int, Opt(help="Days of synthetic history before the start.")] = 31,
    trade_rate_scale: Annotated[
        float, Opt(help="Multiply every synthetic symbol's trade rate (benchmarks raise it).")
    ] = 1.0,
    start: Annotated[
        str | None, Opt(help="Exchange time at start, ISO 8601, UTC if no offset (default: now).")
    ] = None,
    drop_every: Annotated[
        float, Opt(help="Fault: drop every websocket connection every N seconds.")
    ] = 0.0,
    drop_at: Annotated[
        list[float] | None,
        Opt(
            help="Fault: drop every websocket connection at "
            "this many seconds after start "
            "(repeatable)."
        ),
    ] = None,
    rest_429_every: Annotated[int, Opt(help="Fault: every Nth REST request answers 429.")] = 0,
    retry_after: Annotated[float, Opt(help="Retry-After seconds sent with those 429s.")] = 1.0,
    latency_ms: Annotated[
        float, Opt(help="Fault: latency added to REST answers and websocket batches, ms.")
    ] = 0.0,
    jitter_ms: Annotated[float, Opt(help="Fault: extra random latency in [0, N] ms.")] = 0.0,
    malformed_every: Annotated[
        int, Opt(help="Fault: a malformed websocket frame after every Nth event.")
    ] = 0,
    duplicate_every: Annotated[int, Opt(help="Fault: every Nth trade event is sent twice.")] = 0,
    reorder_every: Annotated[
        int, Opt(help="Fault: every Nth trade event is swapped with the next one.")
    ] = 0,
    gap_every: Annotated[
        int,
        Opt(
            help="Fault: every Nth depth diff of a symbol is skipped (a "
            "sequence gap clients must resync from)."
        ),
    ] = 0,
    time_jump_at: Annotated[
        float, Opt(help="Fault: the exchange clock jumps at this many seconds after start ...")
    ] = 0.0,
    time_jump_ms: Annotated[int, Opt(help="... by this many ms (negative: backwards).")] = 0,
    weight_limit: Annotated[
        int, Opt(help="REST request weight per window, as Binance's REQUEST_WEIGHT (0: off).")
    ] = 6000,
    weight_window: Annotated[float, Opt(help="Length of a weight window, seconds.")] = 60.0,
    ping_interval: Annotated[
        float, Opt(help="Websocket server ping every N seconds (0: no pings).")
    ] = 20.0,
    pong_timeout: Annotated[
        float, Opt(help="Drop a websocket client silent this many seconds after a ping.")
    ] = 60.0,
    max_connection_age: Annotated[
        float, Opt(help="Close websocket connections at this age, seconds (Binance: 24 h).")
    ] = 86_400.0,
    birdeye_quota: Annotated[
        int, Opt(help="Emulated Birdeye: requests per API key per day.")
    ] = 1000,
) -> None:
    """Serve Binance spot REST + websocket (and Birdeye's public API) on loopback.

    Point a ccxt client at it by replacing the API hosts: REST http://HOST:PORT/api/v3,
    websocket ws://HOST:PORT/ws (and /stream), Birdeye http://HOST:PORT/defi/...
    """
    from ats_pipelines.emulator.birdeye import BirdeyeConfig
    from ats_pipelines.emulator.faults import FaultConfig
    from ats_pipelines.emulator.keepalive import WsLimits
    from ats_pipelines.emulator.ratelimit import RateLimitConfig
    from ats_pipelines.emulator.server import Emulator, EmulatorConfig, EmulatorConfigError
    from ats_pipelines.emulator.synthetic import SyntheticConfig

    if data is not None and not data.is_dir():
        fail(f"--data {data} is not a directory")
    use_synthetic = synthetic if synthetic is not None else data is None
    if weight_limit < 0 or weight_window <= 0:
        fail(f"--weight-limit {weight_limit} must be >= 0 and --weight-window {weight_window} > 0")
    if ping_interval < 0 or pong_timeout <= 0 or max_connection_age < 0:
        fail(
            f"--ping-interval {ping_interval} and --max-connection-age {max_connection_age} "
            f"must be >= 0, --pong-timeout {pong_timeout} > 0"
        )
    faults = FaultConfig(
        drop_every_s=drop_every,
        drop_at_s=tuple(drop_at or ()),
        rest_429_every=rest_429_every,
        retry_after_s=retry_after,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        malformed_every=malformed_every,
        duplicate_every=duplicate_every,
        reorder_every=reorder_every,
        gap_every=gap_every,
        time_jump_at_s=time_jump_at,
        time_jump_ms=time_jump_ms,
    )
    config = EmulatorConfig(
        host=host,
        port=port,
        speed=speed,
        start_ms=_start_ms(start),
        synthetic=SyntheticConfig(
            seed=seed,
            history_days=history_days,
            symbol_count=symbols,
            trade_rate_scale=trade_rate_scale,
        )
        if use_synthetic
        else None,
        replay_dir=data,
        faults=faults,
        birdeye=BirdeyeConfig(daily_quota=birdeye_quota),
        rate_limit=RateLimitConfig(weight_per_window=weight_limit, window_s=weight_window),
        ws_limits=WsLimits(
            ping_interval_s=ping_interval,
            pong_timeout_s=pong_timeout,
            max_age_s=max_connection_age,
        ),
    )
    try:
        server = Emulator(config)
    except (EmulatorConfigError, ValueError) as exc:
        fail(str(exc))
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


async def _serve(server: object) -> None:
    from ats_pipelines.emulator.server import Emulator

    assert isinstance(server, Emulator)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    typer.echo(
        f"emulator listening rest={server.rest_url} ws={server.ws_url} "
        f"birdeye={server.birdeye_url} symbols={len(server.sources)}",
        err=False,
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
