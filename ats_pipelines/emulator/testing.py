"""Helpers for tests (and the streaming service's tests): run an emulator in-process and point
an *unmodified* ccxt client at it.

    async with running_emulator(EmulatorConfig(speed=50)) as emu:
        exchange = ccxt_binance(emu)
        await exchange.load_markets()
        ...
        await exchange.close()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ccxt.pro as ccxtpro

from ats_pipelines.emulator.server import Emulator, EmulatorConfig
from ats_pipelines.exchange.urls import SPOT_ONLY_OPTIONS, rehost_urls


@asynccontextmanager
async def running_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    """An emulator on a free loopback port for the duration of the block."""
    emulator = Emulator(config)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def ccxt_config(emulator: Emulator, **options: Any) -> dict[str, Any]:
    """ccxt constructor config pointing every Binance URL at ``emulator``."""
    api = ccxtpro.binance().describe()["urls"]["api"]
    return {
        "enableRateLimit": True,
        "urls": {"api": rehost_urls(api, emulator.rest_url)},
        "options": {**SPOT_ONLY_OPTIONS, **options},
    }


def ccxt_binance(emulator: Emulator, **options: Any) -> ccxtpro.binance:
    """A stock ``ccxt.pro.binance`` talking to ``emulator`` (close it when done)."""
    return ccxtpro.binance(ccxt_config(emulator, **options))  # type: ignore[arg-type]
