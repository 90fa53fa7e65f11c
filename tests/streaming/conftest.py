"""Fixtures of the streaming tests: the emulator (stock ccxt against it), a fast service config,
the kline/trade oracle comparison, a TCP proxy that can cut the database off, and a dedicated
throw-away PostgreSQL cluster that a test may restart (the suite's own server is shared).

Every test stores rows under its own exchange name (``s<hex>``) in the session database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ats_pipelines.config import Settings
from ats_pipelines.db.cluster import LocalCluster
from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.emulator.fixtures import FIXED_START_MS, make_emulator  # noqa: F401
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.lib.timeframes import bucket_end_ms, floor_ms, parse_timeframe
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.verify import Comparison, compare_bars, compare_trades

MINUTE = 60_000
START_1558 = FIXED_START_MS + (3 * 60 + 58) * MINUTE  # 2024-05-01 15:58 UTC
SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT"}


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code (a worker thread has no loop)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_config(db_url: str, tmp_path: Path) -> Callable[..., StreamConfig]:
    """A service config for ``emu`` with test-speed knobs; rows under a unique exchange name."""

    def make(emu: Emulator, **changes: Any) -> StreamConfig:
        values: dict[str, Any] = dict(
            database_url=db_url,
            symbols=tuple(SYMBOLS),
            exchange_url=emu.rest_url,
            store_as=f"s{uuid.uuid4().hex[:8]}",
            tick_s=0.05,
            reconnect_base_s=0.05,
            reconnect_max_s=0.5,
            heal_interval_s=2.0,
            checkpoint_interval_s=2.0,
            heartbeat_interval_s=1.0,
            spill_dir=tmp_path / "spill",
            db_retry_base_s=0.1,
            db_retry_max_s=0.5,
            open_bar_interval_s=0.5,
            clock_sync_s=5.0,
        )
        values.update(changes)
        return StreamConfig(**values)

    return make


async def compare_with_oracle(
    conn: asyncpg.Connection,
    emu: Emulator,
    exchange: str,
    symbol: str,
    timeframes: tuple[str, ...],
    start_ms: int,
    closed_before: int,
) -> Comparison:
    """Every bucket of each timeframe from the one holding ``start_ms`` to those over by
    ``closed_before``: stored == kline, field for field (floats bit for bit)."""
    market = emu.synthetic_market
    return await compare_bars(
        conn,
        market,
        SYMBOLS[symbol],
        (exchange, symbol),
        timeframes,
        (start_ms, closed_before),
        emu.clock.now_ms(),
    )


async def compare_with_trades(
    conn: asyncpg.Connection, emu: Emulator, exchange: str, symbol: str
) -> tuple[int, list[int], list[int]]:
    """Stored trades against the oracle's over the stored id range: (count, missing, wrong)."""
    result = await compare_trades(conn, emu.synthetic_market, SYMBOLS[symbol], (exchange, symbol))
    assert result.duplicated == 0, "a trade is stored twice"
    return result.count, result.missing, result.wrong


async def assert_exact(
    conn: asyncpg.Connection, emu: Emulator, service: Any, timeframes: tuple[str, ...]
) -> dict[str, int]:
    """Every trade and every bar of ``timeframes`` the service stored, for each of its
    symbols from its first trade's bucket to its last final one, equals the emulator's; returns
    how many trades and bars were compared."""
    label, out = service.config.label, {"trades": 0, "bars": 0}
    for symbol, p in service.pipelines.items():
        count, missing, wrong = await compare_with_trades(conn, emu, label, symbol)
        assert missing == [] and wrong == [], (symbol, missing[:5], wrong[:5])
        assert p.coverage_from is not None
        result = await compare_with_oracle(
            conn, emu, label, symbol, timeframes, p.coverage_from, p.closed_before
        )
        assert result.ok, (symbol, result.missing[:5], result.wrong[:3], result.extra[:5])
        out["trades"] += count
        out["bars"] += result.compared
    return out


@pytest.fixture
def oracle() -> Any:
    class Oracle:
        bars = staticmethod(compare_with_oracle)
        trades = staticmethod(compare_with_trades)
        exact = staticmethod(assert_exact)

    return Oracle


def closed_through(end_ms: int, tf: str) -> int:
    return bucket_end_ms(floor_ms(end_ms, tf), tf)


def tf_ms(tf: str) -> int:
    return parse_timeframe(tf).ms or 0


class TcpProxy:
    """Loopback TCP forwarder to the database; ``cut()`` drops every connection and refuses
    new ones until ``restore()`` (the database "going away" without touching the shared
    server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.up = False
        for w in list(self._writers):
            w.transport.abort()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def db_proxy(db_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """(proxy, url through it) to the session database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.port or 5432)
    await proxy.start()
    auth = parts.netloc.rpartition("@")[0]  # user and password (every role has one)
    netloc = f"{auth}@127.0.0.1:{proxy.port}" if auth else f"127.0.0.1:{proxy.port}"
    yield proxy, urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    await proxy.stop()


@dataclass
class Cluster:
    cluster: LocalCluster
    url: str

    def stop(self) -> None:
        self.cluster.stop()

    def start(self) -> None:
        self.cluster.start()


@pytest.fixture
def dedicated_cluster(settings: Settings) -> Iterator[Cluster]:
    """A throw-away TimescaleDB cluster on its own port, migrated, that the test may stop and
    start (never the suite's shared server)."""
    name = f"ats_stream_{uuid.uuid4().hex[:8]}"
    own = dataclasses.replace(
        settings,
        state_dir=settings.state_dir / f"stream-pg-{name}",
        db_port=free_port(),
        db_name=name,
        external_database_url=None,
    )
    cluster = LocalCluster(own)
    cluster.start()
    try:
        cluster.create_database(name)

        async def setup() -> None:
            async with connection(own.database_url) as conn:
                await migrate(conn)

        run_sync(setup())
        yield Cluster(cluster, own.database_url)
    finally:
        cluster.stop()
        shutil.rmtree(own.state_dir, ignore_errors=True)
        base = own.pg_dir
        if base.is_symlink():
            shutil.rmtree(base.resolve(), ignore_errors=True)
