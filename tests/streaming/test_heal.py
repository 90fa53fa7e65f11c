"""Gap healing against the emulator's REST klines: missing bars are filled and wrong ones
fixed (source 'heal'), right ones and rows lacking optional columns are left alone, and a
second pass writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.streaming.heal import differs, fetch_klines, heal, kline_values
from ats_pipelines.streaming.rows import candles_table

MINUTE = 60_000
FIRST = FIXED_START_MS - 30 * MINUTE


async def test_heal_fills_missing_and_fixes_wrong_bars(make_emulator: Any, db_url: str) -> None:
    emu = await make_emulator(
        start_ms=FIXED_START_MS, birdeye=None, synthetic=SyntheticConfig(symbol_count=1)
    )
    client = ExchangeClient(build_exchange("binance", rest_url=emu.rest_url))
    exchange = f"h{uuid.uuid4().hex[:8]}"
    try:
        klines = await fetch_klines(client, "BTC/USDT", "1m", FIRST, FIRST + 10 * MINUTE)
        assert [k["ts"] for k in klines] == [FIRST + i * MINUTE for i in range(10)]
        right = klines[0]
        wrong = {
            **klines[1],
            "close": klines[1]["close"] + 1.0,
            "high": klines[1]["high"] + 1.0,
            "trade_count": klines[1]["trade_count"] - 1,
        }
        rest_only = {
            **klines[3],
            "quote_volume": None,
            "trade_count": None,
            "taker_buy_volume": None,
            "vwap": None,
        }
        async with connection(db_url) as conn:
            for values, source in ((right, "stream"), (wrong, "stream"), (rest_only, "rest")):
                await bulk_write(
                    conn,
                    "market.candles",
                    candles_table(exchange, "BTC/USDT", ["1m"], [values], source),
                )
            windows = {"1m": (FIRST, FIRST + 10 * MINUTE), "5m": (FIRST, FIRST + 10 * MINUTE)}
            result = await heal(conn, client, exchange=exchange, symbol="BTC/USDT", windows=windows)
            assert result.compared == {"1m": 10, "5m": 2}
            assert result.inserted == {"1m": 7, "5m": 2} and result.updated == {"1m": 1, "5m": 0}
            again = await heal(conn, client, exchange=exchange, symbol="BTC/USDT", windows=windows)
            assert again.written == 0
            rows = await conn.fetch(
                "SELECT ts, source, open, high, low, close, volume, quote_volume, trade_count, "
                "taker_buy_volume FROM market.candles WHERE exchange = $1 AND timeframe = '1m' "
                "ORDER BY ts",
                exchange,
            )
        sources = [r["source"] for r in rows]
        assert sources == ["stream", "heal", "heal", "rest"] + ["heal"] * 6
        for row, kline in zip(rows, klines, strict=True):
            assert differs(dict(row), kline) == []
        assert rows[2]["trade_count"] == klines[2]["trade_count"] > 0
    finally:
        await client.close()


def test_kline_values_and_comparison() -> None:
    raw = [
        FIRST,
        "10.0",
        "12.0",
        "9.0",
        "11.0",
        "4.0",
        FIRST + 59_999,
        "42.0",
        7,
        "1.5",
        "15.7",
        "0",
    ]
    v = kline_values(raw)
    assert (v["open"], v["volume"], v["quote_volume"], v["trade_count"]) == (10.0, 4.0, 42.0, 7)
    assert v["vwap"] == 10.5 and v["taker_buy_volume"] == 1.5
    assert differs({**v, "volume": 4.0 * (1 + 1e-12)}, v) == []  # float noise is not wrong
    assert differs({**v, "volume": 3.9, "trade_count": 6}, v) == ["trade_count", "volume"]
    ohlcv_only = kline_values(raw[:6])
    assert ohlcv_only["quote_volume"] is None and ohlcv_only["vwap"] == 11.0


def test_planner_waits_for_commits_and_retries_until_done() -> None:
    from ats_pipelines.streaming.heal import FAR_PAST, HealPlanner

    planner = HealPlanner(("1m", "5m"), lookback_bars=3)
    t = FIRST + 2 * MINUTE + 10_000  # inside the third minute of a five-minute bucket
    planner.request("BTC/USDT", t, t)
    assert planner.plan({"BTC/USDT": FAR_PAST}, {}, periodic=False) == []  # nothing committed
    [work] = planner.plan({"BTC/USDT": FIRST + 4 * MINUTE}, {}, periodic=False)
    assert work.windows == {"1m": (FIRST + 2 * MINUTE, FIRST + 3 * MINUTE)}  # 5m not over
    # the pass failed (not marked done): planned again, then done for the minute
    assert planner.plan({"BTC/USDT": FIRST + 4 * MINUTE}, {}, periodic=False)[0] == work
    planner.done(work)
    assert planner.plan({"BTC/USDT": FIRST + 4 * MINUTE}, {}, periodic=False) == []
    [five] = planner.plan({"BTC/USDT": FIRST + 6 * MINUTE}, {}, periodic=False)
    assert five.windows == {"5m": (FIRST, FIRST + 5 * MINUTE)}
    planner.done(five)
    assert planner.requests == []
    # the periodic look back never reaches before the stream's first trade
    [periodic] = planner.plan(
        {"BTC/USDT": FIRST + 30 * MINUTE}, {"BTC/USDT": FIRST + 28 * MINUTE + 5}, periodic=True
    )
    assert periodic.windows == {
        "1m": (FIRST + 28 * MINUTE, FIRST + 30 * MINUTE),
        "5m": (FIRST + 25 * MINUTE, FIRST + 30 * MINUTE),
    }
