"""Retention on the real server (Apache edition here): old chunks dropped per configured table,
compression skipped with the reason, the Dagster job reporting what it did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.defs.market_data.definitions import build_market_data_defs
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.retention import _retain, apply_retention
from ats_pipelines.warehouse.rollups import server_edition
from tests.warehouse.conftest import run_sync

NOW = datetime.now(UTC).replace(microsecond=0)
RETENTION = {"market.trades": timedelta(days=90), "market.order_book_snapshots": timedelta(days=30)}


def _trades(*ages_days: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "source": "test",
            "ts": [NOW - timedelta(days=d) for d in ages_days],
            "trade_id": [str(i) for i in range(len(ages_days))],
            "price": 100.0,
            "amount": 1.0,
        }
    )


def _books(*ages_days: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "source": "test",
            "ts": [NOW - timedelta(days=d) for d in ages_days],
            "bid_prices": [[99.0]] * len(ages_days),
            "bid_sizes": [[1.0]] * len(ages_days),
            "ask_prices": [[101.0]] * len(ages_days),
            "ask_sizes": [[1.0]] * len(ages_days),
        }
    )


@pytest.fixture(scope="module")
def own_database(make_database: Callable[..., str]) -> str:
    """A database of this module's own: dropping chunks must not touch other tests' rows."""
    url = make_database("ats_ret")

    async def body() -> None:
        async with connection(url) as conn:
            await migrate(conn)

    run_sync(body())
    return url


@pytest.fixture
def retention_db(own_database: str) -> str:
    """The module's database holding old and recent trades and order books, and nothing else."""

    async def body() -> None:
        async with connection(own_database) as conn:
            await conn.execute("TRUNCATE market.trades, market.order_book_snapshots")
            await bulk_write(conn, "market.trades", _trades(120, 100, 2, 0))
            await bulk_write(conn, "market.order_book_snapshots", _books(45, 31, 1))

    run_sync(body())
    return own_database


async def _count(url: str, table: str) -> int:
    async with connection(url) as conn:
        count = await conn.fetchval(f"SELECT count(*) FROM {table}")
        assert isinstance(count, int)
        return count


def test_old_chunks_are_dropped_and_compression_follows_the_edition(retention_db: str) -> None:
    async def body() -> list:
        async with connection(retention_db) as conn:
            return await apply_retention(conn, RETENTION, {"market.trades": timedelta(days=7)})

    async def edition() -> str:
        async with connection(retention_db) as conn:
            return await server_edition(conn)

    actions = {(a.table, a.kind): a for a in run_sync(body())}
    trades = actions[("market.trades", "retention")]
    assert (trades.action, trades.affected) == ("drop_chunks", 2)
    books = actions[("market.order_book_snapshots", "retention")]
    assert (books.action, books.affected) == ("drop_chunks", 2)
    compression = actions[("market.trades", "compression")]
    if run_sync(edition()) == "timescale":  # what is left is younger than 7 days
        assert (compression.action, compression.affected) == ("compress_chunk", 0)
    else:
        assert compression.action == "skipped" and "timescale licence" in compression.note
    assert run_sync(_count(retention_db, "market.trades")) == 2
    assert run_sync(_count(retention_db, "market.order_book_snapshots")) == 1

    again = run_sync(body())  # nothing left to drop
    assert all(a.affected == 0 for a in again)


def test_plain_tables_delete_the_old_rows(retention_db: str) -> None:
    async def body() -> int:
        async with connection(retention_db) as conn:
            action = await _retain(
                conn,
                "postgresql",
                set(),
                "market.trades",
                timedelta(days=90),
                NOW - timedelta(days=90),
            )
            return action.affected

    assert run_sync(body()) == 2
    assert run_sync(_count(retention_db, "market.trades")) == 2


def test_retention_job_reports_what_it_did(
    retention_db: str, dagster_instance: dg.DagsterInstance
) -> None:
    settings = MarketDataSettings(retention=RETENTION, compression={})
    defs = dg.Definitions.merge(
        build_market_data_defs(settings),
        dg.Definitions(
            resources={
                "timescale": TimescaleResource(database_url=retention_db),
                "exchange": ExchangeResource(),
            }
        ),
    )
    job = defs.resolve_job_def("market_data_retention_job")
    result = job.execute_in_process(instance=dagster_instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    assert metadata["chunks_dropped"].value == 4
    assert "market.order_book_snapshots" in str(metadata["actions"].value)
