"""The same stored bars read the same on every edition, and an edition upgrade keeps them.

Each edition runs for real, as its own managed cluster of this machine's build: plain
PostgreSQL (TimescaleDB not preloaded), the Apache edition (on a Community build, the same
binaries with ``timescaledb.license = 'apache'``, exactly how a Community server runs as
Apache), and the Community edition (``'timescale'``) when the build carries its module
(``make test-community``). One symbol gets three days of minutes, native 5m bars inside them
(the rollup must win), and native 1h/1d bars of an earlier day with no minutes (a legacy
file). Every timeframe 1m–1w is read through the read API (``MarketData.get_bars``).
"""

from __future__ import annotations

import dataclasses
import math
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ats_pipelines.config import Settings
from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.cluster import LocalCluster, find_pg_install
from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.reader.provider import MarketData
from ats_pipelines.warehouse.rollups import rollup, rollup_mode, server_edition
from tests.conftest import run_sync

EXCHANGE, SYMBOL = "binance", "BTC/USDT"
LEGACY_DAY = datetime(2024, 3, 3, tzinfo=UTC)  # a Sunday: native 1h and 1d bars only
FIRST_MINUTE = datetime(2024, 3, 4, tzinfo=UTC)  # then three days of minutes
MINUTES = 3 * 1440
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "2h", "4h", "1d", "1w")
HAS_COMMUNITY = find_pg_install().has_timescale_licence


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    cluster: LocalCluster
    url: str
    database: str

    def restart_as(self, licence: str) -> None:
        self.cluster.stop()
        self.cluster.timescale_licence = licence
        self.cluster.start()


@pytest.fixture(scope="module")
def servers(settings: Settings) -> Iterator[dict[str, Server]]:
    """``postgresql`` and ``apache`` clusters, started here and stopped at the end."""
    out: dict[str, Server] = {}
    specs = {"postgresql": (False, None), "apache": (True, "apache" if HAS_COMMUNITY else None)}
    try:
        for name, (preload, licence) in specs.items():
            own = dataclasses.replace(
                settings,
                state_dir=settings.state_dir / f"edition-{name}",
                db_port=_free_port(),
                db_name=f"ats_{name}_{uuid.uuid4().hex[:8]}",
                external_database_url=None,
            )
            cluster = LocalCluster(own, preload_timescaledb=preload, timescale_licence=licence)
            cluster.start()
            cluster.create_database(own.db_name)
            out[name] = Server(cluster, own.database_url, own.db_name)
        yield out
    finally:
        for server in out.values():
            server.cluster.drop_database(server.database)
            server.cluster.stop()


def _minutes() -> list[dict[str, Any]]:
    rows, price = [], 100.0
    for i in range(MINUTES):
        ts = FIRST_MINUTE + timedelta(minutes=i)
        step = math.sin(i / 37.0) * 0.3 + math.cos(i / 11.0) * 0.2
        open_, close = price, round(price + step, 2)
        high, low = max(open_, close) + 0.15, min(open_, close) - 0.1
        volume = round(1.0 + (i % 17) * 0.25, 3)
        rows.append(
            {
                "exchange": EXCHANGE,
                "symbol": SYMBOL,
                "timeframe": "1m",
                "ts": ts,
                "open": open_,
                "high": round(high, 2),
                "low": round(low, 2),
                "close": close,
                "volume": volume,
                "quote_volume": round(volume * close, 4),
                "trade_count": 10 + i % 7,
                "vwap": close,
                "taker_buy_volume": round(volume / 2, 4),
                "source": "test",
            }
        )
        price = close
    return rows


def _native(timeframe: str, start: datetime, count: int, price: float) -> list[dict[str, Any]]:
    width = {"5m": 5, "1h": 60, "1d": 1440}[timeframe]
    return [
        {
            "exchange": EXCHANGE,
            "symbol": SYMBOL,
            "timeframe": timeframe,
            "ts": start + timedelta(minutes=width * i),
            "open": price,
            "high": price + 2,
            "low": price - 2,
            "close": price + 1,
            "volume": 5.0,
            "quote_volume": None,
            "trade_count": None,
            "vwap": None,
            "taker_buy_volume": None,
            "source": "legacy",
        }
        for i in range(count)
    ]


async def _populate(url: str) -> str:
    """Migrate, store the minutes and native bars, roll up; returns the server's edition."""
    async with connection(url) as conn:
        await migrate(conn)
        await bulk_write(conn, "market.candles", _minutes())
        natives = [
            *_native("1h", LEGACY_DAY, 24, 90.0),
            *_native("1d", LEGACY_DAY, 1, 90.0),
            *_native("5m", FIRST_MINUTE, 12, 500.0),  # inside the minutes: the rollup wins
        ]
        await bulk_write(conn, "market.candles", natives)
        await rollup(conn, EXCHANGE, SYMBOL)
        return await server_edition(conn)


def _read_all(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with MarketData(url, exchange=EXCHANGE, redis_url=None) as md:
        start, end = LEGACY_DAY - timedelta(days=7), FIRST_MINUTE + timedelta(days=10)
        return {tf: md.get_bars(SYMBOL, tf, start, end).rows() for tf in TIMEFRAMES}


def _check_served(bars: dict[str, list[tuple[Any, ...]]]) -> None:
    """What every edition must serve, whatever else: rollups over natives, natives alone."""
    assert len(bars["1m"]) == MINUTES
    assert len(bars["5m"]) == MINUTES // 5 and bars["5m"][0][5] == 100.0  # not the native 500
    assert len(bars["1h"]) == 24 + MINUTES // 60  # the legacy day's native hours, then rollups
    assert len(bars["1d"]) == 1 + 3 and bars["1d"][0][5] == 90.0
    assert len(bars["30m"]) == MINUTES // 30 and len(bars["2h"]) == 12 + MINUTES // 120
    assert len(bars["1w"]) == 2  # the legacy Sunday closes one week; the minutes start the next


@pytest.fixture(scope="module")
def served(servers: dict[str, Server], make_database: Any) -> dict[str, Any]:
    """Bars per edition: its own cluster for plain and Apache, a database of the session's
    server for the session's edition (Community under ``make test-community``)."""
    out = {}
    for name, server in servers.items():
        assert run_sync(_populate(server.url)) == name
        out[name] = _read_all(server.url)
    url = make_database("ats_editions")
    edition = run_sync(_populate(url))
    if edition not in out:
        out[edition] = _read_all(url)
    return out


def test_bars_of_every_timeframe_are_identical_across_editions(served: dict[str, Any]) -> None:
    expected = {"postgresql", "apache"} | ({"timescale"} if HAS_COMMUNITY else set())
    assert set(served) == expected
    reference = served["postgresql"]
    _check_served(reference)
    for edition, bars in served.items():
        for tf in TIMEFRAMES:
            assert bars[tf] == reference[tf], (edition, tf)


@pytest.mark.skipif(not HAS_COMMUNITY, reason="needs a Community build (make test-community)")
def test_upgrading_apache_to_community_keeps_every_bar(
    servers: dict[str, Server], served: dict[str, Any]
) -> None:
    apache = servers["apache"]
    before = served["apache"]
    apache.restart_as("timescale")

    async def upgrade() -> tuple[str, str, dict[str, Any]]:
        async with connection(apache.url) as conn:
            await migrate(conn)  # 041 applies now: the aggregates exist, WITH NO DATA
            await rollup(conn, EXCHANGE, SYMBOL)
            held = {
                tf: await conn.fetchval(f"SELECT count(*) FROM market.candles_{tf}")
                for tf in ("5m", "1d")
            }
            return await server_edition(conn), await rollup_mode(conn), held

    edition, mode, held = run_sync(upgrade())
    assert (edition, mode) == ("timescale", "continuous_aggregate")
    # the aggregates themselves hold all the history, not only what came after the upgrade
    assert held == {"5m": MINUTES // 5, "1d": 3}
    after = _read_all(apache.url)
    for tf in TIMEFRAMES:
        assert after[tf] == before[tf], tf
