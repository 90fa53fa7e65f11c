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
from dataclasses import dataclass, field
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


@dataclass
class Comparison:
    """Stored bars against the oracle's klines: every difference named."""

    compared: int = 0
    missing: list[tuple[str, str, int]] = field(default_factory=list)
    wrong: list[tuple[str, str, int, tuple, tuple]] = field(default_factory=list)
    extra: list[tuple[str, str, int]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong or self.extra)


VALUES = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "taker_buy_volume",
)


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
    assert emu.synthetic is not None
    sid = SYMBOLS[symbol]
    now = emu.clock.now_ms()
    out = Comparison()
    for tf in timeframes:
        first = floor_ms(start_ms, tf)
        last = floor_ms(closed_before, tf)  # buckets opening before this are over
        klines = {
            k.open_time: k
            for k in emu.synthetic.klines(sid, tf, first, last - 1, 1000, now)
            if k.open_time < last and k.trades > 0
        }
        rows = await conn.fetch(
            "SELECT ts, open, high, low, close, volume, quote_volume, trade_count, "
            "taker_buy_volume, source FROM market.candles WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 AND ts >= to_timestamp($4 / 1000.0) "
            "AND ts < to_timestamp($5 / 1000.0)",
            exchange,
            symbol,
            tf,
            first,
            last,
        )
        stored = {int(r["ts"].timestamp() * 1000): r for r in rows}
        for ts, k in klines.items():
            out.compared += 1
            row = stored.get(ts)
            if row is None:
                out.missing.append((symbol, tf, ts))
                continue
            out.sources[row["source"]] = out.sources.get(row["source"], 0) + 1
            got = tuple(row[name] for name in VALUES)
            want = (
                float(k.open),
                float(k.high),
                float(k.low),
                float(k.close),
                float(k.volume),
                float(k.quote_volume),
                k.trades,
                float(k.taker_buy_base),
            )
            if got != want:
                out.wrong.append((symbol, tf, ts, got, want))
        out.extra += [(symbol, tf, ts) for ts in stored if ts not in klines]
    return out


async def compare_trades(
    conn: asyncpg.Connection, emu: Emulator, exchange: str, symbol: str
) -> tuple[int, list[int], list[int]]:
    """Stored trades against the oracle's over the stored id range: (count, missing, wrong)."""
    assert emu.synthetic is not None
    rows = await conn.fetch(
        "SELECT trade_id::bigint AS id, (extract(epoch FROM ts) * 1000)::bigint AS ts, price, "
        "amount, side FROM market.trades WHERE exchange = $1 AND symbol = $2 ORDER BY 1",
        exchange,
        symbol,
    )
    if not rows:
        return 0, [], []
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a trade is stored twice"
    truth = emu.synthetic.trades_between(
        SYMBOLS[symbol], rows[0]["ts"], max(r["ts"] for r in rows) + 1
    )
    spec = emu.synthetic.history(SYMBOLS[symbol]).symbol.spec
    expected = {
        int(i): (
            int(t),
            p / 10**spec.price_decimals,
            q / 10**spec.qty_decimals,
            "sell" if m else "buy",
        )
        for i, t, p, q, m in zip(
            truth.ids.tolist(),
            truth.ts.tolist(),
            truth.price.tolist(),
            truth.qty.tolist(),
            truth.buyer_maker.tolist(),
            strict=True,
        )
        if ids[0] <= int(i) <= ids[-1]
    }
    got = {r["id"]: (r["ts"], r["price"], r["amount"], r["side"]) for r in rows}
    missing = sorted(set(expected) - set(got))
    wrong = sorted(i for i in got if i in expected and got[i] != expected[i])
    return len(rows), missing, wrong


@pytest.fixture
def oracle() -> Any:
    class Oracle:
        bars = staticmethod(compare_with_oracle)
        trades = staticmethod(compare_trades)

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
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
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
