"""The ``exchange`` Dagster resource: configuration, secrets via EnvVar, and a real
materialisation that fetches candles from the emulator."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import dagster as dg
import pytest

from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.exchange.rows import CandleRow
from ats_pipelines.exchange.urls import urls_not_on
from ats_pipelines.orchestration.resources.exchange import ExchangeResource


def test_secrets_come_from_env_vars_and_every_url_is_rehosted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATS_TEST_EXCHANGE_KEY", "k-123")
    monkeypatch.setenv("ATS_TEST_EXCHANGE_SECRET", "s-456")
    resource = ExchangeResource(
        api_key=dg.EnvVar("ATS_TEST_EXCHANGE_KEY"),
        secret=dg.EnvVar("ATS_TEST_EXCHANGE_SECRET"),
        rest_url="http://127.0.0.1:9",
        max_attempts=3,
    )
    live = resource.process_config_and_initialize()
    client = live.create_client()
    try:
        assert (client.exchange.apiKey, client.exchange.secret) == ("k-123", "s-456")
        assert urls_not_on(client.exchange.urls["api"], "127.0.0.1:9") == []
        assert client.exchange.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:9/ws"
        assert client.policy.max_attempts == 3
    finally:
        asyncio.run(client.close())


def test_without_an_override_the_exchange_keeps_its_own_hosts() -> None:
    client = ExchangeResource().create_client()
    try:
        assert urlsplit(client.exchange.urls["api"]["public"]).netloc == "api.binance.com"
    finally:
        asyncio.run(client.close())


def test_an_asset_materialises_candles_through_the_resource() -> None:
    config = EmulatorConfig(
        start_ms=FIXED_START_MS, synthetic=SyntheticConfig(symbol_count=2), birdeye=None, speed=1.0
    )

    @dg.asset
    def btc_candles(exchange: ExchangeResource) -> list[CandleRow]:
        async def fetch() -> list[CandleRow]:
            async with exchange.open() as client:
                return await client.fetch_candles(
                    "BTC/USDT", "1h", FIXED_START_MS - 86_400_000, FIXED_START_MS
                )

        return asyncio.run(fetch())

    with emulator_in_thread(config) as emu:
        result = dg.materialize(
            [btc_candles], resources={"exchange": ExchangeResource(rest_url=emu.rest_url)}
        )
    rows = result.output_for_node("btc_candles")
    assert result.success and len(rows) == 24
    assert rows[0].ts == FIXED_START_MS - 86_400_000 and rows[-1].ts == FIXED_START_MS - 3_600_000
