"""pytest fixtures for suites that run against the emulator.

A test directory's ``conftest.py`` imports them to use them::

    from ats_pipelines.emulator.fixtures import make_ccxt, make_emulator  # noqa: F401

``make_emulator(**EmulatorConfig fields)`` starts an emulator on a free loopback port;
``make_ccxt(emulator, **ccxt options)`` gives a stock ``ccxt.pro.binance`` pointed at it.
Everything made is stopped or closed when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.testing import ccxt_binance, emulator_factory

# A fixed exchange start keeps every synthetic market in a suite the same market.
FIXED_START_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.fixture
async def make_emulator() -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    async with emulator_factory() as make:
        yield make


@pytest.fixture
async def make_ccxt() -> AsyncIterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(emulator: Emulator, **options: Any) -> Any:
        exchange = ccxt_binance(emulator, **options)
        made.append(exchange)
        return exchange

    yield make
    for exchange in made:
        await exchange.close()
