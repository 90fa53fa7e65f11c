"""Emulator throughput: sustained websocket trade rate and REST klines throughput.

The emulator runs in its own process (``ats emulator``), the measuring client in this one, so
on a two-core machine each has a core. Baselines, measured in the same run with the same
client: an aiohttp websocket server sending pre-encoded trade messages as fast as it can (the
ceiling of the transport), and an aiohttp server answering every klines request with one
pre-encoded 1000-row body (the ceiling of HTTP with no market behind it).

"Sustained" means the emulator keeps up: it is offered a trade rate (symbols x rate x speed)
and must deliver at least 98 % of it with the stream no more than half a second behind its own
clock. The offered rate is raised step by step; the highest rate sustained is reported.

Prints lines ``name: ours N/s, baseline M/s, ratio R``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
THIS = str(Path(__file__).resolve())
sys.path.insert(0, str(ROOT))

from ats_pipelines.emulator.synthetic import synthetic_symbols  # noqa: E402

SYMBOLS = 20
START = "2024-05-01T00:00:00Z"
WINDOW_S = 5.0
WARMUP_S = 2.0
STEPS = (20_000, 40_000, 60_000, 80_000)
SAMPLE_TRADE = (
    '{"e":"trade","E":1714521600123,"s":"BTCUSDT","t":1000123,"p":"60012.34000000",'
    '"q":"0.01234000","T":1714521600123,"m":false,"M":true}'
)


# -- processes -------------------------------------------------------------------------------


def start_process(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, match.group(1)


def stop_process(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def emulator(speed: float, scale: float) -> tuple[subprocess.Popen[str], str]:
    return start_process(
        [
            "-m",
            "ats_pipelines.cli.main",
            "emulator",
            "--port",
            "0",
            "--symbols",
            str(SYMBOLS),
            "--speed",
            str(speed),
            "--trade-rate-scale",
            str(scale),
            "--start",
            START,
            # capacity, not Binance's budget: 1000 requests/s would spend a minute's 6000
            # weight in three seconds and measure 429s
            "--weight-limit",
            "0",
        ]
    )


def offered_rate(speed: float, scale: float) -> float:
    per_minute = sum(s.trades_per_minute * scale for s in synthetic_symbols(SYMBOLS))
    return per_minute * speed / 60.0


# -- baseline servers (run as ``bench_emulator.py --serve ws|rest``) -------------------------------


async def serve_baseline(kind: str) -> None:
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the client's SUBSCRIBE

        async def flood() -> None:
            while not ws.closed:
                for _ in range(500):
                    await ws.send_str(SAMPLE_TRADE)
                await asyncio.sleep(0)

        sender = asyncio.get_running_loop().create_task(flood())
        async for _ in ws:  # read, so the client's close is answered
            pass
        sender.cancel()
        return ws

    row = [
        1714521600000,
        "60012.34000000",
        "60100.00000000",
        "59950.10000000",
        "60050.00000000",
        "12.34567000",
        1714521659999,
        "741234.12345678",
        812,
        "6.12345000",
        "367123.12345678",
        "0",
    ]
    body = json.dumps([row] * 1000).encode()

    async def klines(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.add_routes([web.get("/ws", ws_handler), web.get("/api/v3/klines", klines)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"baseline {kind} http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# -- measuring client ------------------------------------------------------------------------------


async def count_trades(base: str, streams: list[str]) -> tuple[float, int]:
    """Trade frames per second over the window, and the last trade time seen."""
    url = base.replace("http://", "ws://") + "/ws"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=1 << 22) as ws,
    ):
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        started = time.perf_counter()
        counted, last_t, measuring_from = 0, 0, started + WARMUP_S
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"stream ended: {msg.type}")
            now = time.perf_counter()
            if now < measuring_from:
                continue
            if msg.data.startswith('{"e":"trade"'):
                counted += 1
                if counted % 512 == 0:
                    last_t = int(msg.data[msg.data.index('"T":') + 4 :].split(",", 1)[0])
            if now - measuring_from >= WINDOW_S:
                return counted / (now - measuring_from), last_t


async def server_time(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(base + "/api/v3/time") as resp:
        return int((await resp.json())["serverTime"])


async def klines_rate(
    base: str, symbols: list[str], history_ms: tuple[int, int], workers: int = 8
) -> tuple[float, float]:
    """Requests/s and rows/s of 1000-row 1m klines at random points of the history."""
    rng = random.Random(5)
    done = rows = 0
    stop_at = time.perf_counter() + WARMUP_S + WINDOW_S
    measure_from = time.perf_counter() + WARMUP_S

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, rows
        while time.perf_counter() < stop_at:
            start = rng.randrange(*history_ms) // 60_000 * 60_000
            params = {
                "symbol": rng.choice(symbols),
                "interval": "1m",
                "limit": "1000",
                "startTime": str(start),
            }
            async with session.get(base + "/api/v3/klines", params=params) as resp:
                body = await resp.read()
            if time.perf_counter() >= measure_from:
                done += 1
                rows += body.replace(b" ", b"").count(b"],[") + 1  # either JSON spacing
        return None

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return done / WINDOW_S, rows / WINDOW_S


# -- the benchmark -----------------------------------------------------------------------------


async def sustained_trade_rate() -> tuple[float, float]:
    streams = [f"{s.spec.stream_id}@trade" for s in synthetic_symbols(SYMBOLS)]
    best = 0.0
    speed = 20.0
    for target in STEPS:
        scale = target / offered_rate(speed, 1.0)
        proc, base = emulator(speed, scale)
        try:
            rate, last_t = await count_trades(base, streams)
            lag_s = (await server_time(base) - last_t) / 1000.0 / speed
        finally:
            stop_process(proc)
        offered = offered_rate(speed, scale)
        kept_up = rate >= 0.98 * offered and lag_s < 0.5
        print(
            f"  offered {offered:,.0f} trades/s -> delivered {rate:,.0f}/s, "
            f"stream lag {lag_s:.2f}s: {'sustained' if kept_up else 'behind'}",
            flush=True,
        )
        if not kept_up:
            break
        best = offered  # delivered can exceed it briefly while a warm-up backlog drains
    proc, base = start_process([THIS, "--serve", "ws"])
    try:
        baseline, _ = await count_trades(base, streams)
    finally:
        stop_process(proc)
    return best, baseline


async def rest_rates() -> tuple[tuple[float, float], tuple[float, float]]:
    symbols = [s.spec.symbol_id for s in synthetic_symbols(SYMBOLS)]
    proc, base = emulator(1.0, 1.0)
    try:
        now = await server_time(base)
        ours = await klines_rate(base, symbols[:4], (now - 29 * 86_400_000, now - 86_400_000))
    finally:
        stop_process(proc)
    proc, base = start_process([THIS, "--serve", "rest"])
    try:
        baseline = await klines_rate(base, symbols[:4], (0, 1))
    finally:
        stop_process(proc)
    return ours, baseline


async def main() -> None:
    ours, baseline = await sustained_trade_rate()
    print(
        f"emulator_ws_trades_sustained: ours {ours:,.0f}/s, baseline {baseline:,.0f}/s, "
        f"ratio {ours / baseline:.2f}  (baseline: aiohttp sending pre-encoded trades, "
        f"{SYMBOLS} symbols on one connection)"
    )
    (req, rows), (base_req, base_rows) = await rest_rates()
    print(
        f"emulator_rest_klines_requests: ours {req:,.0f}/s, baseline {base_req:,.0f}/s, "
        f"ratio {req / base_req:.2f}  (1000-row 1m klines, 8 concurrent clients)"
    )
    print(
        f"emulator_rest_klines_rows: ours {rows:,.0f}/s, baseline {base_rows:,.0f}/s, "
        f"ratio {rows / base_rows:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=["ws", "rest"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_baseline(args.serve))
    else:
        asyncio.run(main())
