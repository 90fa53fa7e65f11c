"""Fixtures for the market-data tests: an emulator served from a thread, definitions built from
test settings, real resources on the session database, and a synchronous query helper.

Every test stores its rows under its own exchange name (``t<hex>``) in the shared database, so
tests never see each other's candles; the emulator is the stock Binance protocol (``binance``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.defs.market_data.definitions import build_market_data_defs
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import Emulator, EmulatorConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Partitioned asset checks and backfill policies are preview/beta in Dagster 1.13.
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.BetaWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"))


# The synthetic market's clock starts 2024-05-01 12:00 UTC: these days are over and in its past.
DAY1, DAY2, DAY3 = "2024-04-20", "2024-04-21", "2024-04-22"
NOW = datetime.fromtimestamp(FIXED_START_MS / 1000, UTC)


def run_sync(coro: Any) -> Any:
    """Run a coroutine from a sync test (Dagster's assets run their own event loops)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def synthetic_emulator() -> Iterator[Emulator]:
    """One synthetic market for the tests that inject no faults (its days are cached)."""
    with emulator_in_thread(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emulator:
        yield emulator


@pytest.fixture
def fresh_emulator() -> Iterator[Emulator]:
    """An emulator of the same market for a test that changes what it serves."""
    with emulator_in_thread(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emulator:
        yield emulator


@pytest.fixture
def exchange_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def market_settings(exchange: str, emulator: Emulator, **overrides: Any) -> MarketDataSettings:
    fields: dict[str, Any] = {
        "exchange": exchange,
        "symbols": ("BTC/USDT", "ETH/USDT"),
        "start_date": "2024-04-01",
        "exchange_url": emulator.rest_url,
    }
    return MarketDataSettings(**{**fields, **overrides})


@pytest.fixture
def query(db_url: str) -> Callable[..., list[Any]]:
    """``query(sql, *args)`` -> rows, on the session database."""

    def run(sql: str, *args: Any) -> list[Any]:
        async def body() -> list[Any]:
            async with connection(db_url) as conn:
                return list(await conn.fetch(sql, *args))

        return run_sync(body())

    return run


class MarketDefs:
    """The market-data definitions of one test, with real resources, and ways to run them."""

    def __init__(
        self,
        settings: MarketDataSettings,
        db_url: str,
        emulator: Emulator,
        instance: dg.DagsterInstance | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.resources = {
            "timescale": TimescaleResource(database_url=db_url),
            "exchange": ExchangeResource(
                exchange_id="binance",
                rest_url=emulator.rest_url,
                backoff_base_s=0.01,
                max_attempts=3,
            ),
        }
        self.defs = dg.Definitions.merge(
            build_market_data_defs(settings), dg.Definitions(resources=self.resources)
        )

    def asset(self, name: str) -> dg.AssetsDefinition:
        for asset in self.defs.assets or []:
            if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey(name) in asset.keys:
                return asset
        raise KeyError(name)

    @property
    def gap_check(self) -> dg.AssetChecksDefinition:
        return next(iter(self.defs.asset_checks or []))  # type: ignore[return-value]

    def materialize(
        self,
        names: list[str],
        *,
        partition: str | None = None,
        first: str | None = None,
        last: str | None = None,
        with_check: bool = False,
        repair: bool = False,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInJobResult:
        """Materialise assets for one partition key, or a ranged run ``first``..``last``."""
        assets: list[Any] = [self.asset(n) for n in names]
        if with_check:
            assets.append(self.gap_check)
        tags = {}
        if first is not None:
            tags = {
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last or first,
            }
        config = {"ops": {"candles_1m": {"config": {"repair_only": True}}}} if repair else None
        return dg.materialize(
            assets,
            resources=self.resources,
            partition_key=partition,
            tags=tags,
            run_config=config,
            raise_on_error=raise_on_error,
            instance=self.instance,
        )

    def check(self, partition: str) -> dg.AssetCheckEvaluation:
        """Run only the missing-minutes check of one partition."""
        job = self.defs.resolve_job_def("candles_1m_gap_check_job")
        result = job.execute_in_process(
            tags={"dagster/partition": partition}, instance=self.instance
        )
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation


@pytest.fixture(scope="session")
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """One ephemeral instance for every run of the suite (creating one costs ~0.3 s)."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def make_defs(db_url: str, dagster_instance: dg.DagsterInstance) -> Callable[..., MarketDefs]:
    def make(exchange: str, emulator: Emulator, **overrides: Any) -> MarketDefs:
        return MarketDefs(
            market_settings(exchange, emulator, **overrides), db_url, emulator, dagster_instance
        )

    return make


def key(day: str, symbol: str = "BTC/USDT") -> str:
    return f"{day}|{symbol}"
