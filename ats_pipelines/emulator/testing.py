"""Helpers for tests (and the streaming service's tests): run an emulator in-process and point
an *unmodified* ccxt client at it.

    async with running_emulator(EmulatorConfig(speed=50)) as emu:
        exchange = ccxt_binance(emu)
        await exchange.load_markets()
        ...
        await exchange.close()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
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
    api: dict[str, Any] = ccxtpro.binance().describe()["urls"]["api"]  # type: ignore[index]
    return {
        "enableRateLimit": True,
        "urls": {"api": rehost_urls(api, emulator.rest_url)},
        "options": {**SPOT_ONLY_OPTIONS, **options},
    }


def ccxt_binance(emulator: Emulator, **options: Any) -> ccxtpro.binance:
    """A stock ``ccxt.pro.binance`` talking to ``emulator`` (close it when done)."""
    return ccxtpro.binance(ccxt_config(emulator, **options))  # type: ignore[arg-type]


@asynccontextmanager
async def emulator_factory() -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    """``make(**EmulatorConfig fields)`` starts emulators that all stop when the block ends
    (what the ``make_emulator`` pytest fixtures wrap)."""
    async with AsyncExitStack() as stack:

        async def make(**fields: Any) -> Emulator:
            return await stack.enter_async_context(running_emulator(EmulatorConfig(**fields)))

        yield make


async def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Poll ``predicate`` until true; a safety limit (not a timing assertion) names ``what``."""
    import asyncio

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - the state lives in objects we do not own
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), limit_s)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what} after {limit_s}s") from None


def levels(side: list[tuple[str, str]] | list[list[Any]]) -> list[list[float]]:
    """Book levels as float pairs (how ccxt holds them), for comparisons."""
    return [[float(p), float(q)] for p, q, *_ in side]


@contextmanager
def emulator_in_thread(config: EmulatorConfig | None = None) -> Iterator[Emulator]:
    """A running emulator on its own event loop in a daemon thread, for synchronous callers
    (``dg.materialize`` tests, scripts). Control it only through its URLs from the caller's
    thread, or via ``run_coroutine_threadsafe`` on ``emulator.loop``."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ats-emulator", daemon=True)
    thread.start()
    emulator = Emulator(config)
    try:
        asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(timeout=60)
        emulator.loop = loop
        yield emulator
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
