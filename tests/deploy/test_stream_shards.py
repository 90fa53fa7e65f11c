"""Sharded streaming as an operator runs it: `ats stream --shard i/n` in n processes covers
disjoint symbol sets that add up to the configured ones; a shard killed (SIGKILL) and started
again loses no trade; both stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.streaming.config import shard_symbols

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")


def _wait(
    what: str,
    probe: Callable[[], bool],
    timeout_s: float = 180,
    state: Callable[[], object] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; now {state()}"
        time.sleep(0.5)


def _trades(db_url: str, label: str) -> dict[str, tuple[int, int, int]]:
    """Per symbol: (stored trades, lowest id, highest id)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*), min(trade_id::bigint), max(trade_id::bigint) "
            "FROM market.trades WHERE exchange = %s GROUP BY symbol",
            (label,),
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _saved(db_url: str, label: str) -> set[str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT symbol FROM ops.stream_state WHERE exchange = %s", (label,)
        ).fetchall()
    return {r[0] for r in rows}


def _heartbeat_symbols(db_url: str, label: str) -> dict[str, set[str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT shard, symbols FROM ops.stream_heartbeats WHERE shard LIKE %s",
            (f"{label}:%",),
        ).fetchall()
    return {shard.split(":", 1)[1]: set(symbols) for shard, symbols in rows}


def test_shards_cover_disjoint_symbols_and_a_killed_shard_loses_nothing(
    db_url: str, tmp_path: Path
) -> None:
    label = f"sh{uuid.uuid4().hex[:8]}"
    config = EmulatorConfig(
        speed=10.0, start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=4)
    )
    with emulator_in_thread(config) as emu:
        env = {
            **os.environ,
            "ATS_DATABASE_URL": db_url,
            "ATS_EXCHANGE_URL": emu.rest_url,
            "ATS_SYMBOLS": ",".join(SYMBOLS),
            "ATS_STATE_DIR": str(tmp_path),
            # with a key a restarted shard refills its trade gap by id (historicalTrades);
            # without one only from the latest 1000 trades
            "ATS_EXCHANGE_API_KEY": "emulator",
            "ATS_EXCHANGE_SECRET": "emulator",
        }

        def start(shard: str) -> subprocess.Popen[bytes]:
            log = (tmp_path / f"shard-{shard.replace('/', '-')}.log").open("ab")
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ats_pipelines.cli.main",
                    "stream",
                    "--shard",
                    shard,
                    "--store-as",
                    label,
                    "--no-cache",
                    "--no-books",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        shards = {"0/2": start("0/2"), "1/2": start("1/2")}
        try:
            _wait("trades of every symbol", lambda: len(_trades(db_url, label)) == 4)
            _wait("a heartbeat of each shard", lambda: len(_heartbeat_symbols(db_url, label)) == 2)
            covered = _heartbeat_symbols(db_url, label)
            assert covered == {
                "0/2": set(shard_symbols(SYMBOLS, 0, 2)),
                "1/2": set(shard_symbols(SYMBOLS, 1, 2)),
            }
            assert not covered["0/2"] & covered["1/2"]
            assert covered["0/2"] | covered["1/2"] == set(SYMBOLS)

            # the service resumes a symbol from its last checkpoint (ops.stream_state, saved
            # every few seconds); a crash before the first one starts the symbol afresh
            _wait(
                "a checkpoint of the shard to kill", lambda: _saved(db_url, label) >= covered["1/2"]
            )
            shards["1/2"].send_signal(signal.SIGKILL)  # a crash: nothing flushed since
            shards["1/2"].wait(timeout=30)
            at_kill = _trades(db_url, label)
            time.sleep(3.0)  # 30 exchange seconds go by unwatched
            shards["1/2"] = start("1/2")
            victims = covered["1/2"]

            def healed() -> bool:
                now = _trades(db_url, label)
                return all(
                    now[s][2] > at_kill[s][2] + 100 and now[s][0] == now[s][2] - now[s][1] + 1
                    for s in victims
                )

            _wait(
                f"the restarted shard past its gap, every trade id stored (at the kill {at_kill})",
                healed,
                300,
                lambda: _trades(db_url, label),
            )
        finally:
            for proc in shards.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(timeout=60) for proc in shards.values()]
    assert codes == [0, 0]
    final = _trades(db_url, label)
    for symbol in SYMBOLS:  # the untouched shard's symbols have no hole either
        count, low, high = final[symbol]
        assert count == high - low + 1
