"""Zero loss under starvation (issue 14, finding 3): a consumer that stalls while the market
trades — its symbol's lock held for seconds, as a starved event loop or a slow checkpoint
would — lets ccxt's bounded per-symbol trade cache overflow, and the trades that fell out of it
are older than the 1,000 that Binance's public recent-trades endpoint serves. They must still be
fetched (aggregate trades by time), so every trade is stored once and every bar equals the
emulator's kline."""

from __future__ import annotations

import asyncio
from typing import Any

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread, wait_until
from ats_pipelines.streaming.service import StreamService

START = FIXED_START_MS + (3 * 60 + 58) * 60_000  # 15:58 exchange time
SPEED = 150.0  # with twice the rate, BTC/USDT trades ~300 times a wall second
STALL_S = 12.0  # ~3,600 trades: past the 100-trade cache and the 1,000 recent trades
TIMEFRAMES = ("1m", "5m")


async def test_a_stalled_consumer_loses_no_trade(
    make_config: Any, oracle: Any, db_url: str
) -> None:
    config_emu = EmulatorConfig(
        speed=SPEED,
        start_ms=START,
        birdeye=None,
        synthetic=SyntheticConfig(symbol_count=2, trade_rate_scale=2.0),
    )
    with emulator_in_thread(config_emu) as emu:
        config = make_config(
            emu, timeframes=TIMEFRAMES, grace_ms=5_000, watch_books=False, trades_cache=100
        )
        service = StreamService(config)
        run = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        btc = service.pipelines["BTC/USDT"]
        await wait_until(lambda: btc.counts["applied"] > 200, "BTC trades flowing", 30)
        assert emu.synthetic is not None
        async with service.symbols.locks["BTC/USDT"]:  # the consumer stalls
            hi_before = btc.tracker.hi if btc.tracker else None
            await asyncio.sleep(STALL_S)
            newest = emu.synthetic.trades_between(
                "BTCUSDT", START, emu.clock.now_ms() + 1
            ).ids.max()
        assert hi_before is not None and int(newest) - hi_before > 2_000  # it really overflowed
        until = emu.clock.now_ms() + 4 * 60_000
        await wait_until(lambda: emu.clock.now_ms() >= until, "four more exchange minutes", 60)
        passes = service.heal_passes
        await wait_until(lambda: service.heal_passes >= passes + 2, "two heal passes", 30)
        service.request_stop("test over")
        summary = await asyncio.wait_for(run, 60)

    # fetched over REST, part of it older than the recent window (the emulator may send some
    # of the stall's trades late when its thread is starved too: those need no fetching)
    assert summary["trades"]["backfilled"] > 100
    assert emu.rest.paths["/api/v3/aggTrades"] >= 1
    async with connection(db_url) as conn:
        compared = await oracle.exact(conn, emu, service, TIMEFRAMES)
    assert compared["trades"] > 2_000 and compared["bars"] >= 1
