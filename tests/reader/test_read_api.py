"""The read API on real stored data: bars and their schema, the multi-timeframe view aligned on
bar close without lookahead, order books as known at a moment, inference data from the hot
cache (a Redis of the test's own) or, without one, from the database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest
import redis

from ats_pipelines import marketdata, reader
from ats_pipelines.cache.keys import bars_key, encode_bar
from ats_pipelines.reader import InferenceContext, MarketData, schemas
from tests.reader.conftest import BOOK_SYMBOL, SYMBOL, Stored

START = datetime(2019, 10, 11, tzinfo=UTC)


def _file_rows(frame: pl.DataFrame, start: datetime, end: datetime) -> list[tuple]:
    part = frame.filter(pl.col("date").is_between(start, end, closed="left"))
    return [
        (r[0].replace(tzinfo=UTC) if r[0].tzinfo is None else r[0], *r[1:]) for r in part.rows()
    ]


def _bar_rows(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("ts", "open", "high", "low", "close", "volume").rows()


def test_get_bars_returns_the_stored_bars_typed(provider: MarketData, stored: Stored) -> None:
    start, end = START + timedelta(hours=3), START + timedelta(hours=11)
    bars = provider.get_bars(SYMBOL, "1m", start, end)
    assert isinstance(bars, pl.DataFrame) and bars.schema == pl.Schema(schemas.BARS)
    assert _bar_rows(bars) == _file_rows(stored.minutes, start, end)
    assert (bars["close_time"] - bars["ts"]).unique().to_list() == [timedelta(minutes=1)]
    five = provider.get_bars(SYMBOL, "5m", START, START + timedelta(days=3))
    assert _bar_rows(five) == _file_rows(stored.five, START, START + timedelta(days=3))
    assert five["timeframe"].unique().to_list() == ["5m"]

    table = provider.get_bars(SYMBOL, "1h", start, end, arrow=True)
    assert isinstance(table, pa.Table)
    assert len(table) == 8
    assert table.schema == pl.DataFrame(schema=schemas.BARS).to_arrow().schema


def test_get_bars_interval_is_half_open_and_inputs_are_checked(provider: MarketData) -> None:
    at = START + timedelta(hours=1)
    assert provider.get_bars(SYMBOL, "1h", at, at).height == 0
    assert provider.get_bars(SYMBOL, "1h", at, at + timedelta(hours=1))["ts"].to_list() == [at]
    with pytest.raises(ValueError, match="timezone-aware"):
        provider.get_bars(SYMBOL, "1m", datetime(2019, 10, 11), at)
    with pytest.raises(ValueError, match="1x"):
        provider.get_bars(SYMBOL, "1x", START, at)
    assert provider.get_bars("NOPE/ETH", "1m", START, at).schema == pl.Schema(schemas.BARS)


def test_multi_timeframe_rows_see_only_bars_closed_by_then(provider: MarketData) -> None:
    end = datetime(2019, 10, 12, 14, 7, tzinfo=UTC)
    tfs = ["1h", "1m", "15m", "5m"]
    view = provider.get_multi_timeframe(SYMBOL, tfs, end, timedelta(hours=6))
    assert view.schema == pl.Schema(schemas.multi_timeframe_schema(["1m", "5m", "15m", "1h"]))
    minutes = provider.get_bars(SYMBOL, "1m", end - timedelta(hours=7), end)
    closing = minutes.filter(
        pl.col("close_time") > end - timedelta(hours=6), pl.col("close_time") <= end
    )
    assert view["close_time"].to_list() == closing["close_time"].to_list()
    assert view["1m_close"].to_list() == closing["close"].to_list()
    for tf in ("5m", "15m", "1h"):
        bars = provider.get_bars(SYMBOL, tf, end - timedelta(hours=8), end)
        for row in view.iter_rows(named=True):
            known = bars.filter(pl.col("close_time") <= row["close_time"])
            latest = known.row(-1, named=True)  # brute force: the last bar closed by then
            assert (row[f"{tf}_ts"], row[f"{tf}_close"], row[f"{tf}_volume"]) == (
                latest["ts"],
                latest["close"],
                latest["volume"],
            ), (tf, row["close_time"])
            assert (
                row[f"{tf}_ts"] + timedelta(minutes=int(tf[:-1]) * (60 if tf[-1] == "h" else 1))
                <= row["close_time"]
            )
    arrow = provider.get_multi_timeframe(SYMBOL, tfs, end, "6h", arrow=True)
    assert isinstance(arrow, pa.Table)
    assert len(arrow) == view.height


def test_order_book_as_known_at_a_moment(provider: MarketData, stored: Stored) -> None:
    books = stored.books.sort("ts")
    third, fourth = books["ts"][2], books["ts"][3]
    between = third + (fourth - third) / 2
    raw = provider.get_order_book(BOOK_SYMBOL, between)
    assert raw.schema == pl.Schema(schemas.BOOK_RAW) and raw.height == 1
    assert (
        raw["ts"][0] == third and raw["bid_prices"][0].to_list() == books["bid_prices"][2].to_list()
    )
    assert raw["mid"][0] == pytest.approx(
        (books["bid_prices"][2][0] + books["ask_prices"][2][0]) / 2
    )

    at = books["ts"][60] + timedelta(milliseconds=500)
    second = provider.get_order_book(BOOK_SYMBOL, at, aggregation="1s")
    assert second.schema == pl.Schema(schemas.BOOK_AGG) and second.height == 1
    buckets = books["ts"].dt.truncate("1s").unique().to_list()
    assert second["ts"][0] == max(b for b in buckets if b + timedelta(seconds=1) <= at)
    assert second["close_time"][0] <= at
    assert provider.get_order_book(BOOK_SYMBOL, between, aggregation="1s").height == 0

    minute = provider.get_order_book(BOOK_SYMBOL, books["ts"][-1] + timedelta(minutes=2), "1m")
    assert minute["snapshots"].sum() > 0 and minute["close_time"][0] <= books["ts"][-1] + timedelta(
        minutes=2
    )
    assert provider.get_order_book(BOOK_SYMBOL, books["ts"][0] - timedelta(seconds=1)).height == 0
    with pytest.raises(ValueError, match="aggregation"):
        provider.get_order_book(BOOK_SYMBOL, between, aggregation="5m")  # type: ignore[arg-type]


def test_inference_without_a_hot_cache_reads_the_database_and_says_so(
    provider: MarketData, caplog: pytest.LogCaptureFixture
) -> None:
    context = InferenceContext(timeframes=("5m", "1m", "1h"), bars=3)
    with caplog.at_level(logging.WARNING, logger="ats_pipelines.reader.provider"):
        data = provider.get_inference_data(SYMBOL, context=context)
    assert "event=hot_cache_fallback reason=redis_not_configured" in caplog.text
    assert data.schema == pl.Schema(schemas.INFERENCE)
    assert data["timeframe"].to_list() == ["1m"] * 3 + ["5m"] * 3 + ["1h"] * 3
    assert set(data["source"]) == {"database"}
    last_minute = datetime(2019, 10, 13, 11, 19, tzinfo=UTC)  # the recording's last bar
    assert data.filter(pl.col("timeframe") == "1m")["ts"].to_list()[-1] == last_minute


def test_inference_as_of_a_moment_has_no_lookahead(provider: MarketData) -> None:
    at = datetime(2019, 10, 12, 10, 30, 30, tzinfo=UTC)
    data = provider.get_inference_data(SYMBOL, at, InferenceContext(("1m", "1h", "4h"), bars=2))
    assert (data["close_time"] <= at).all()
    for tf in ("1m", "1h", "4h"):
        got = data.filter(pl.col("timeframe") == tf)
        stored = provider.get_bars(SYMBOL, tf, START, START + timedelta(days=3))
        closed = stored.filter(pl.col("close_time") <= at)
        assert got["ts"].to_list() == closed["ts"].tail(2).to_list(), tf
        assert stored.filter(pl.col("close_time") > at).height > 0  # there was a future
    assert data.filter(pl.col("timeframe") == "4h")["ts"][-1] == datetime(
        2019, 10, 12, 4, tzinfo=UTC
    )


def test_inference_reads_the_hot_cache_first(
    db_url: str, stored: Stored, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_url)
    key = bars_key(stored.exchange, SYMBOL, "1m")
    newest = [
        {
            "ts": int(datetime(2019, 10, 13, 11, m, tzinfo=UTC).timestamp() * 1000),
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": 10.0 + m,
            "quote_volume": None,
            "trade_count": 3,
            "vwap": None,
            "taker_buy_volume": None,
        }
        for m in range(16, 21)
    ]
    client.delete(key)
    client.zadd(key, {encode_bar(b): b["ts"] for b in newest})
    with (
        MarketData(db_url, exchange=stored.exchange, redis_url=redis_url) as md,
        caplog.at_level(logging.WARNING, logger="ats_pipelines.reader.provider"),
    ):
        data = md.get_inference_data(SYMBOL, context=InferenceContext(("1m", "5m"), bars=3))
        assert md.stats.cache_hits == 1
    one = data.filter(pl.col("timeframe") == "1m")
    assert one["source"].to_list() == ["cache"] * 3
    assert one["volume"].to_list() == [28.0, 29.0, 30.0]  # the cache's values, newest three
    assert one["trade_count"].to_list() == [3, 3, 3]
    assert data.filter(pl.col("timeframe") == "5m")["source"].unique().to_list() == ["database"]
    assert "reason=cache_miss:5m" in caplog.text
    client.delete(key)
    client.close()


def test_inference_falls_back_when_redis_is_unreachable(db_url: str, stored: Stored) -> None:
    with MarketData(db_url, exchange=stored.exchange, redis_url="redis://127.0.0.1:9/0") as md:
        data = md.get_inference_data(SYMBOL, context=InferenceContext(("1m",), bars=2))
        assert data["source"].to_list() == ["database", "database"]
        assert any(r.startswith("redis_unreachable") for r in md.stats.cache_fallbacks)


def test_module_functions_use_a_shared_provider(
    db_url: str, stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATS_DATABASE_URL", db_url)
    monkeypatch.setenv("ATS_EXCHANGE", stored.exchange)
    # The shared provider is the reader's; ``marketdata`` is the analysts' name for it.
    monkeypatch.setattr(reader, "_default", None)
    bars = marketdata.get_bars(SYMBOL, "1d", START, START + timedelta(days=3))
    assert bars["ts"].to_list() == [START + timedelta(days=i) for i in range(3)]
    assert marketdata.default_provider() is marketdata.default_provider()
    marketdata.default_provider().close()
