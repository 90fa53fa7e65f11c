"""Restarting the service mid-bar — stopped cleanly, or crashed without saving anything since
its last checkpoint — loses nothing and duplicates nothing: the bar spanning each restart is
the stream's own (not healed) and equals the emulator's kline; every trade is stored once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import wait_until
from ats_pipelines.streaming.service import StreamService

START = FIXED_START_MS + 4 * 3_600_000 + 30_000  # 16:00:30 exchange time
TIMEFRAMES = ("1m", "5m")


def _mid_minute(emu: Any) -> bool:
    return 20_000 <= emu.clock.now_ms() % 60_000 <= 40_000


async def _stream_until_mid_bar(config: Any, emu: Any, how: str) -> tuple[dict, list[int]]:
    service = StreamService(config)
    run = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 30)
    await wait_until(lambda: len(service.bar_commits) >= 2 * len(TIMEFRAMES), "bars committed", 30)
    await wait_until(lambda: _mid_minute(emu), "the middle of a minute", 30)
    open_minutes = [
        b.ts
        for p in service.pipelines.values()
        for b in p.agg.open_bars()
        if b.timeframe == "1m" and b.trade_count > 0
    ]
    assert len(open_minutes) == 2  # both symbols are mid-bar
    if how == "crash":
        service.crash()
    else:
        service.request_stop("restart test")
    summary = await asyncio.wait_for(run, 30)
    return summary, open_minutes


async def test_restart_mid_bar_loses_and_repeats_nothing(
    make_emulator: Any, make_config: Any, oracle: Any, db_url: str
) -> None:
    emu = await make_emulator(
        speed=60.0, start_ms=START, birdeye=None, synthetic=SyntheticConfig(symbol_count=2)
    )
    config = make_config(
        emu,
        timeframes=TIMEFRAMES,
        grace_ms=5_000,
        watch_books=False,
        checkpoint_interval_s=1.0,
        heal_interval_s=1.0,
    )
    spanning: list[int] = []
    for how in ("graceful", "crash"):
        summary, open_minutes = await _stream_until_mid_bar(config, emu, how)
        spanning += open_minutes
        await asyncio.sleep(0.5)  # half an exchange minute goes by unwatched
    final = StreamService(config)
    run = asyncio.create_task(final.run())
    await asyncio.wait_for(final.ready.wait(), 30)
    resumed = {s: p.fresh for s, p in final.pipelines.items()}
    await wait_until(
        lambda: all(p.closed_before > max(spanning) + 6 * 60_000 for p in final.pipelines.values()),
        "six more minutes",
        30,
    )
    passes = final.heal_passes
    await wait_until(lambda: final.heal_passes > passes, "a heal pass", 30)
    final.request_stop("test over")
    summary = await asyncio.wait_for(run, 30)

    assert resumed == {"BTC/USDT": False, "ETH/USDT": False}  # resumed saved state
    assert summary["trades"]["backfilled"] > 0 and summary["trades"]["late"] == 0
    async with connection(db_url) as conn:
        for symbol in ("BTC/USDT", "ETH/USDT"):
            p = final.pipelines[symbol]
            # from the first trade the first run got (resumed state): at 60x a slow start
            # of that run passes more than the 30 exchange seconds left of START's minute
            assert p.coverage_from is not None and p.coverage_from >= START
            result = await oracle.bars(
                conn, emu, config.label, symbol, TIMEFRAMES, p.coverage_from, p.closed_before
            )
            assert result.ok, (symbol, result.missing, result.wrong[:3], result.extra)
            # only the first, partial buckets of the very first start were healed
            assert result.sources == {"heal": 2, "stream": result.compared - 2}
            count, missing, wrong = await oracle.trades(conn, emu, config.label, symbol)
            assert count > 300 and missing == [] and wrong == []
        restarts = await conn.fetch(
            "SELECT source FROM market.candles WHERE exchange = $1 AND timeframe = '1m' "
            "AND ts = ANY($2::timestamptz[])",
            config.label,
            [datetime.fromtimestamp(ts / 1000, UTC) for ts in spanning],
        )
        assert [r["source"] for r in restarts] == ["stream"] * len(spanning)
        saved = await conn.fetchval(
            "SELECT count(*) FROM ops.stream_state WHERE exchange = $1", config.label
        )
        assert saved == 2
