"""Every reader finds bars where they live, on this server's edition (run the suite on each).

On Community the rolled-up bars are continuous aggregates and native higher-timeframe bars stay
in ``market.candles``; readers that looked only in one place lost the other (issue 21, defects
1, 3 and 4). One day of minutes gets rolled up; the day before holds only native 1h bars (a
legacy file); then the quality loaders, the training sensor's query and the read API must see
both, and timeframes outside the stored ones are computed or refused in one line.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.lib.timeframes import TimeframeError
from ats_pipelines.quality import loaders
from ats_pipelines.reader.provider import MarketData
from ats_pipelines.warehouse.bar_location import bars_from, check_timeframe
from ats_pipelines.warehouse.rollups import rollup
from tests.conftest import run_sync

SYMBOL = "BTC/USDT"
DAY = datetime(2024, 5, 7, tzinfo=UTC)
LEGACY = DAY - timedelta(days=1)


def _bar(exchange: str, tf: str, ts: datetime, price: float, source: str) -> dict[str, Any]:
    return {
        "exchange": exchange,
        "symbol": SYMBOL,
        "timeframe": tf,
        "ts": ts,
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price + 0.5,
        "volume": 2.0,
        "source": source,
    }


@pytest.fixture(scope="module")
def exchange(db_url: str) -> str:
    """A fresh exchange name holding one rolled-up day of minutes and a native-only day."""
    name = f"loc{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        async with connection(db_url) as conn:
            minutes = [
                _bar(name, "1m", DAY + timedelta(minutes=i), 100 + (i % 50) / 10, "test")
                for i in range(1440)
            ]
            await bulk_write(conn, "market.candles", minutes)
            hours = [
                _bar(name, "1h", LEGACY + timedelta(hours=h), 90.0, "legacy") for h in range(24)
            ]
            await bulk_write(conn, "market.candles", hours)
            await rollup(conn, name, SYMBOL)

    run_sync(body())
    return name


def test_quality_loaders_read_rolled_up_bars(db_url: str, exchange: str) -> None:
    async def body() -> tuple[int, dict[str, int], dict[str, int], list[tuple[str, str]]]:
        async with connection(db_url) as conn:
            end = DAY + timedelta(days=1)
            frame = await loaders.load_candles(conn, exchange, [SYMBOL], "5m", DAY, end)
            counts = await loaders.candle_counts(conn, exchange, [SYMBOL], "5m", DAY, end)
            before = await loaders.bars_before(conn, exchange, [SYMBOL], "5m", end, 1000)
            series = await loaders.candle_series(conn, "5m", DAY, end)
            return frame.height, counts, before, series

    height, counts, before, series = run_sync(body())
    assert height == 288 and counts == {SYMBOL: 288} and before == {SYMBOL: 288}
    assert (exchange, SYMBOL) in series


def test_native_bars_are_served_beside_rolled_up_ones(db_url: str, exchange: str) -> None:
    async def body() -> tuple[int, int, Any]:
        async with connection(db_url) as conn:
            end = DAY + timedelta(days=1)
            frame = await loaders.load_candles(conn, exchange, [SYMBOL], "1h", LEGACY, end)
            legacy = frame.filter(frame["source"] == "legacy").height
            # the training sensor's question: the newest bar of the scope's timeframe
            bars = await bars_from(conn, "1h")
            newest = await conn.fetchval(
                f"SELECT max(ts) FROM {bars} WHERE exchange = $1 AND symbol = $2",
                exchange,
                SYMBOL,
            )
            return frame.height, legacy, newest

    height, legacy, newest = run_sync(body())
    assert (height, legacy) == (48, 24)
    assert newest == DAY + timedelta(hours=23)


def test_other_timeframes_are_computed_from_lower_ones(db_url: str, exchange: str) -> None:
    with MarketData(db_url, exchange=exchange, redis_url=None) as md:
        thirty = md.get_bars(SYMBOL, "30m", DAY, DAY + timedelta(days=1))
        minutes = md.get_bars(SYMBOL, "1m", DAY, DAY + timedelta(minutes=30))
        two_hours = md.get_bars(SYMBOL, "2h", LEGACY, DAY)
    assert thirty.height == 48
    first = thirty.row(0, named=True)
    assert first["open"] == minutes["open"][0] and first["close"] == minutes["close"][-1]
    assert first["high"] == minutes["high"].max() and first["low"] == minutes["low"].min()
    assert first["volume"] == pytest.approx(minutes["volume"].sum())
    assert two_hours.height == 12 and set(two_hours["open"]) == {90.0}  # from native hours


@pytest.mark.parametrize("timeframe", ["1M", "30s", "banana"])
def test_unserved_timeframes_are_refused_in_one_line(timeframe: str) -> None:
    with pytest.raises(TimeframeError) as caught:
        check_timeframe(timeframe)
    message = str(caught.value)
    assert "\n" not in message and "stored: 1m, 5m, 15m, 1h, 4h, 1d" in message
