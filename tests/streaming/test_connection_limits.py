"""The streaming service survives Binance's connection rules without losing data: the server
closing every connection at its (shortened) 24-hour limit, and dropping connections it
judges silent (a ping timeout). Every trade is stored once and the 1m bars equal the
emulator's klines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.keepalive import WsLimits
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import emulator_in_thread, wait_until
from ats_pipelines.streaming.service import StreamService

START = FIXED_START_MS + (3 * 60 + 55) * 60_000  # 15:55 exchange time
SPEED = 60.0  # an exchange minute a wall second


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (WsLimits(max_age_s=2.5), "max_age"),
        # a pong timeout shorter than the ping interval: every connection is judged silent
        # at its first check and dropped without a closing handshake
        (WsLimits(ping_interval_s=2.5, pong_timeout_s=2.0), "pong_timeout"),
    ],
)
async def test_service_survives_forced_reconnects_without_losing_data(
    make_config: Any, oracle: Any, limits: WsLimits, reason: str
) -> None:
    with emulator_in_thread(
        EmulatorConfig(
            speed=SPEED,
            start_ms=START,
            birdeye=None,
            synthetic=SyntheticConfig(symbol_count=2),
            ws_limits=limits,
        )
    ) as emu:
        config = make_config(emu, timeframes=("1m",), grace_ms=30_000, metrics_port=0)
        service = StreamService(config)
        run = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        await wait_until(lambda: emu.clock.now_ms() >= START + 12 * 60_000, "16:07", 60)
        passes = service.heal_passes
        await wait_until(lambda: service.heal_passes >= passes + 1, "a heal pass", 30)
        service.request_stop("test over")
        summary = await asyncio.wait_for(run, 60)
        closed = [k.closed_for for k in emu.keepalives.values()]

    assert closed.count(reason) >= 3, closed
    assert summary["reconnects"]["trades"] >= 3
    async with connection(config.database_url) as conn:
        for symbol in ("BTC/USDT", "ETH/USDT"):
            pipeline = service.pipelines[symbol]
            first_trade, closed_before = pipeline.coverage_from, pipeline.closed_before
            assert first_trade is not None
            result = await oracle.bars(
                conn, emu, config.label, symbol, ("1m",), first_trade, closed_before
            )
            assert result.ok, (symbol, result.missing[:5], result.wrong[:3], result.extra[:5])
            assert result.compared >= 8
            count, missing, wrong = await oracle.trades(conn, emu, config.label, symbol)
            assert count > 100 and missing == [] and wrong == []
