"""Chaos: the streaming service for several minutes against the emulator under every fault at
once, then every trade and every 1m/5m bar compared with the emulator's own.

    uv run --frozen python bench/bench_chaos.py [--minutes 4]

* The emulator (in this process, its own thread) serves a seeded synthetic market with faults:
  websocket drops, depth-diff gaps (book resyncs), malformed frames, duplicated and reordered
  trades, and 429s with Retry-After on REST.
* The service runs as ``ats stream`` in its own process on a throw-away PostgreSQL cluster.
  Along the way: a CPU hog on both cores (two busy processes, bounded, they stop by
  themselves), a PostgreSQL restart, and a ``kill -9`` of the service followed by a restart
  (it resumes from its saved state and fetches what it missed over REST).
* At the end the service is stopped with SIGTERM (it flushes), and the stored trades (over the
  stored id range) and 1m/5m bars (from the first trade's bucket to the saved ``closed_before``)
  are compared with the emulator field for field. Target: 0 missing, 0 duplicated, 0 wrong.

The baseline here is the emulator itself: what it sent is the truth every row is checked
against; the "share stored" line is stored/offered in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ats_pipelines.config import load_settings  # noqa: E402
from ats_pipelines.db.cluster import LocalCluster  # noqa: E402
from ats_pipelines.db.connect import connection  # noqa: E402
from ats_pipelines.db.migrate import migrate  # noqa: E402
from ats_pipelines.emulator.faults import FaultConfig  # noqa: E402
from ats_pipelines.emulator.fixtures import FIXED_START_MS  # noqa: E402
from ats_pipelines.emulator.server import Emulator, EmulatorConfig  # noqa: E402
from ats_pipelines.emulator.synthetic import SyntheticConfig  # noqa: E402
from ats_pipelines.emulator.testing import emulator_in_thread  # noqa: E402
from ats_pipelines.streaming.verify import Comparison, compare_bars, compare_trades  # noqa: E402

SPEED = 10.0  # 4 wall minutes = 40 exchange minutes: 40 1m and 8 5m bars per symbol
START_MS = FIXED_START_MS + 4 * 3_600_000  # 16:00 exchange time
SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT"}
TIMEFRAMES = ("1m", "5m")
FAULTS = FaultConfig(
    seed=11,
    drop_every_s=25.0,
    rest_429_every=15,
    retry_after_s=1.0,
    malformed_every=97,
    duplicate_every=7,
    reorder_every=11,
    gap_every=400,
)
HOG = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``ats stream`` as a child process (started, killed, restarted, stopped)."""

    def __init__(self, emu: Emulator, url: str, state_dir: Path, label: str) -> None:
        self.cmd = [
            str(Path(sys.executable).parent / "ats"),
            "stream",
            "--symbols",
            ",".join(SYMBOLS),
            "--timeframes",
            ",".join(TIMEFRAMES),
            "--exchange-url",
            emu.rest_url,
            "--store-as",
            label,
            "--heal-interval",
            "15",
            "--no-cache",
        ]
        self.env = {
            **os.environ,
            "ATS_DATABASE_URL": url,
            "ATS_STATE_DIR": str(state_dir),
            "ATS_ENV": "test",
        }
        self.log = (state_dir / "stream.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def cpu_hog(seconds: float) -> list[subprocess.Popen[bytes]]:
    """Two busy processes (one per core) that end by themselves after ``seconds``."""
    code = HOG.format(s=seconds)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]


async def scenario(emu: Emulator, cluster: LocalCluster, service: Service, total_s: float) -> dict:
    t0 = time.monotonic()
    events: dict[str, int] = {"postgres_restarts": 0, "kill9": 0, "cpu_hog_s": 0}

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, fraction * total_s - (time.monotonic() - t0)))

    service.start()
    await at(0.10)
    hog_s = round(0.35 * total_s)
    hogs = cpu_hog(hog_s)
    events["cpu_hog_s"] = hog_s
    print(f"  {time.monotonic() - t0:5.0f}s cpu hog on 2 cores for {hog_s}s", flush=True)
    await at(0.30)
    await asyncio.to_thread(cluster.stop)
    print(f"  {time.monotonic() - t0:5.0f}s postgres stopped", flush=True)
    await asyncio.sleep(8)
    await asyncio.to_thread(cluster.start)
    events["postgres_restarts"] += 1
    print(f"  {time.monotonic() - t0:5.0f}s postgres started", flush=True)
    await at(0.55)
    service.kill9()
    events["kill9"] += 1
    print(f"  {time.monotonic() - t0:5.0f}s service killed (-9)", flush=True)
    await asyncio.sleep(5)
    service.start()
    print(f"  {time.monotonic() - t0:5.0f}s service restarted", flush=True)
    await at(1.0)
    code = service.stop()
    print(f"  {time.monotonic() - t0:5.0f}s service stopped (exit {code})", flush=True)
    for hog in hogs:
        hog.wait()
    return events


async def compare(conn: Any, emu: Emulator, label: str, symbol: str) -> dict[str, int]:
    """Trades and 1m/5m bars of ``symbol`` against the emulator's: counts of each outcome."""
    market, sid = emu.synthetic_market, SYMBOLS[symbol]
    trades = await compare_trades(conn, market, sid, (label, symbol))
    span = await conn.fetchrow(
        "SELECT (SELECT (extract(epoch FROM min(ts)) * 1000)::bigint FROM market.trades "
        "WHERE exchange = $1 AND symbol = $2) AS first, (extract(epoch FROM closed_before) "
        "* 1000)::bigint AS closed FROM ops.stream_state WHERE exchange = $1 AND symbol = $2",
        label,
        symbol,
    )
    bars = Comparison()
    if span is not None and span["first"] is not None and span["closed"] is not None:
        bars = await compare_bars(
            conn,
            market,
            sid,
            (label, symbol),
            TIMEFRAMES,
            (span["first"], span["closed"]),
            emu.clock.now_ms(),
        )
    return {
        "trades": trades.expected,
        "trades_missing": len(trades.missing),
        "trades_duplicated": trades.duplicated,
        "trades_wrong": len(trades.wrong),
        "bars": bars.compared,
        "bars_missing": len(bars.missing),
        "bars_duplicated": 0,  # (exchange, symbol, timeframe, ts) is the table's key
        "bars_wrong": len(bars.wrong) + len(bars.extra),
    }


def make_cluster() -> tuple[LocalCluster, str, Path]:
    """A throw-away cluster (it is restarted mid-run) under the project's state directory,
    where the cluster's own user may write."""
    settings = load_settings({**os.environ, "ATS_ENV": "test"})
    name = f"ats_chaos_{uuid.uuid4().hex[:8]}"
    own = dataclasses.replace(
        settings,
        state_dir=settings.state_dir / f"bench-{name}",
        db_port=free_port(),
        db_name=name,
        external_database_url=None,
    )
    cluster = LocalCluster(own)
    cluster.start()
    cluster.create_database(name)
    return cluster, own.database_url, own.state_dir


async def run(minutes: float) -> int:
    base = Path(tempfile.mkdtemp(prefix="ats-chaos-"))
    cluster, url, state_dir = make_cluster()
    label = f"chaos{uuid.uuid4().hex[:6]}"
    try:
        async with connection(url) as conn:
            await migrate(conn)
        config = EmulatorConfig(
            speed=SPEED,
            start_ms=START_MS,
            birdeye=None,
            faults=FAULTS,
            synthetic=SyntheticConfig(symbol_count=2, trade_rate_scale=4.0),
        )
        with emulator_in_thread(config) as emu:
            print(f"chaos: {minutes:g} min, emulator x{SPEED:g}, faults {FAULTS.describe()}")
            service = Service(emu, url, base, label)
            events = await scenario(emu, cluster, service, minutes * 60.0)
            faults = dict(sorted(emu.faults.counts.items()))
            async with connection(url) as conn:
                per_symbol = [await compare(conn, emu, label, s) for s in SYMBOLS]
        n = {k: sum(c[k] for c in per_symbol) for k in per_symbol[0]}
        injected = {k: v for k, v in faults.items() if k != "rest_requests"}
        print(f"faults injected: {injected} {events}")
        print(
            f"trades compared {n['trades']}: missing {n['trades_missing']}, "
            f"duplicated {n['trades_duplicated']}, wrong {n['trades_wrong']}"
        )
        print(
            f"bars (1m, 5m) compared {n['bars']}: missing {n['bars_missing']}, "
            f"duplicated {n['bars_duplicated']}, wrong {n['bars_wrong']}"
        )
        bad = sum(v for k, v in n.items() if k.endswith(("missing", "duplicated", "wrong")))
        if bad:
            print(f"  service log: {base / 'stream.log'} (kept)")
            return 1
        return 0
    finally:
        cluster.stop()
        pg_dir = cluster.settings.pg_dir
        if pg_dir.is_symlink():
            shutil.rmtree(pg_dir.resolve(), ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "chaos").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="wall minutes (default 4)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.minutes > 60:
        parser.error(f"--minutes {args.minutes}: must be in (0, 60]")
    sys.exit(asyncio.run(run(args.minutes)))


if __name__ == "__main__":
    main()
