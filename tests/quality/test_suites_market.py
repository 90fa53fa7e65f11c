"""Market-data suites on real recorded data (pass) and on broken copies of it (fail, naming the
expectation's rule and the offending rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.quality.validate import (
    check_candles,
    check_order_book_aggregates,
    check_order_books,
    check_trade_flow,
    check_trades,
)
from tests.quality.conftest import NOW, book_aggregates, freqtrade_candles, trade_flow


def rows_of(outcome: SuiteOutcome, rule: str, key: str = "_row") -> set[object]:
    """Every sampled offending row of ``rule`` (by input row number, or another column)."""
    assert rule in outcome.failed_rules, outcome.summary()
    return {s[key] for f in outcome.failures if f.rule == rule for s in f.sample}


def set_at(frame: pl.DataFrame, row: int, **values: object) -> pl.DataFrame:
    index = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(index == row).then(pl.lit(v)).otherwise(pl.col(c)).cast(frame.schema[c]).alias(c)
        for c, v in values.items()
    )


# --- candles ----------------------------------------------------------------------------------


def test_real_xrp_candles_pass_with_the_exchanges_empty_minutes(
    xrp_candles: pl.DataFrame, xrp_empty_minutes: pl.DataFrame
) -> None:
    outcome = check_candles(xrp_candles, timeframe="1m", now=NOW, confirmed_empty=xrp_empty_minutes)
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == 2469 and outcome.coverage == 1.0
    assert outcome.evaluated >= 20


def test_without_the_empty_minutes_the_same_bars_miss_coverage(xrp_candles: pl.DataFrame) -> None:
    # an illiquid pair: 1,091 of 3,560 minutes had no trade; unconfirmed, they are gaps
    outcome = check_candles(xrp_candles, timeframe="1m", now=NOW)
    assert outcome.failed_rules == ["ohlcv.coverage"]
    series = outcome.series
    assert series is not None and series["missing"].to_list() == [1091]
    assert outcome.gaps["bars"].sum() == 1091


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe", "rows"),
    [
        ("UNITTEST_BTC-1m.json", "UNITTEST/BTC", "1m", 13681),
        ("ETH_BTC-5m.feather", "ETH/BTC", "5m", 5760),
        ("futures/XRP_USDT_USDT-1h-futures.feather", "XRP/USDT:USDT", "1h", 100),
    ],
)
def test_real_candles_of_other_timeframes_pass(
    testdata: Path, name: str, symbol: str, timeframe: str, rows: int
) -> None:
    frame = freqtrade_candles(testdata, name, symbol, timeframe)
    outcome = check_candles(frame, timeframe=timeframe, now=NOW)
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == rows


def test_broken_candles_name_each_rule_and_row(
    xrp_candles: pl.DataFrame, xrp_empty_minutes: pl.DataFrame
) -> None:
    """One broken copy, one fault per row: each rule names exactly its row; the ingestion
    validator rejects the same rows under the same rule ids."""
    row = {
        name: 100 + 10 * i
        for i, name in enumerate(("high", "low", "nan", "volume", "aligned", "timeframe", "future"))
    }
    c = xrp_candles
    # relabelled 5m on a bar aligned to 5m: the validator (reading the row's own timeframe)
    # and the 1m suite then agree that only the label is wrong
    row["timeframe"] = next(i for i in range(141, 160) if c["ts"][i].minute % 5 == 0)
    broken = set_at(c, row["high"], high=c["open"][row["high"]] * 0.5)
    broken = set_at(broken, row["low"], low=c["close"][row["low"]] * 2)
    broken = set_at(broken, row["nan"], close=float("nan"))
    broken = set_at(broken, row["volume"], volume=-1.0)
    broken = set_at(broken, row["aligned"], ts=c["ts"][row["aligned"]] + timedelta(seconds=30))
    broken = set_at(broken, row["timeframe"], timeframe="5m")
    broken = set_at(broken, row["future"], ts=NOW + timedelta(days=1))
    broken = pl.concat([broken, broken[200:201]])  # a repeated bar, delivered again at the end
    outcome = check_candles(broken, timeframe="1m", now=NOW, confirmed_empty=xrp_empty_minutes)

    assert not outcome.success
    assert rows_of(outcome, "ohlcv.high_bounds") == {row["high"]}
    assert rows_of(outcome, "ohlcv.low_bounds") == {row["low"]}
    assert row["high"] in rows_of(outcome, "ohlcv.high_low")
    assert rows_of(outcome, "ohlcv.price_positive") == {row["nan"]}
    assert rows_of(outcome, "ohlcv.volume") == {row["volume"]}
    assert rows_of(outcome, "ohlcv.ts_aligned") == {row["aligned"]}
    assert rows_of(outcome, "ohlcv.timeframe") == {row["timeframe"]}
    assert rows_of(outcome, "ohlcv.ts_future") == {row["future"]}
    assert rows_of(outcome, "ohlcv.duplicate_key") == {200, c.height}
    # the repeat and the bar after the future one go back in time
    assert {c.height, row["future"] + 1} <= rows_of(outcome, "ohlcv.ts_monotonic")
    sample = next(f for f in outcome.failures if f.rule == "ohlcv.high_bounds").sample[0]
    assert sample["ts"] == c["ts"][row["high"]].isoformat() and sample["symbol"] == "XRP/ETH"

    validator = DataValidator(now=lambda: NOW).candles(broken, timeframe=None)
    rejected = validator.rejected.group_by("rule").agg(pl.col("row").unique().sort())
    by_rule = {r["rule"]: set(r["row"]) for r in rejected.iter_rows(named=True)}
    for rule in (
        "ohlcv.high_bounds",
        "ohlcv.low_bounds",
        "ohlcv.price_positive",
        "ohlcv.volume",
        "ohlcv.ts_aligned",
        "ohlcv.ts_future",
    ):
        assert by_rule[rule] == rows_of(outcome, rule), rule


def test_a_missing_block_fails_coverage_and_lists_the_gap(
    xrp_candles: pl.DataFrame, xrp_empty_minutes: pl.DataFrame
) -> None:
    start = datetime(2019, 10, 12, 3, 0, tzinfo=UTC)
    end = start + timedelta(hours=6)
    cut = xrp_candles.filter(~pl.col("ts").is_between(start, end, closed="left"))
    outcome = check_candles(cut, timeframe="1m", now=NOW, confirmed_empty=xrp_empty_minutes)
    assert outcome.failed_rules == ["ohlcv.coverage"]
    assert outcome.coverage is not None and outcome.coverage < 0.95
    runs = outcome.gaps.filter(pl.col("gap_start") >= start)
    # the block's minutes that had trades are missing; quiet minutes stay confirmed empty
    first, last = runs["gap_start"].min(), runs["gap_end"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    assert first >= start and last <= end
    assert runs["bars"].sum() == xrp_candles.height - cut.height
    sample = next(f for f in outcome.failures if f.rule == "ohlcv.coverage").sample[0]
    assert sample["symbol"] == "XRP/ETH" and sample["missing"] == runs["bars"].sum()


def test_a_window_expecting_bars_of_a_silent_symbol_fails(xrp_candles: pl.DataFrame) -> None:
    window = (datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 12, tzinfo=UTC))
    day = xrp_candles.filter(pl.col("ts") < window[1])
    outcome = check_candles(
        day,
        timeframe="1m",
        now=NOW,
        window=window,
        series=[("binance", "XRP/ETH"), ("binance", "ETH/BTC")],
    )
    assert "ohlcv.coverage" in outcome.failed_rules
    assert "ETH/BTC" in rows_of(outcome, "ohlcv.coverage", key="symbol")


def test_naive_timestamps_are_refused_naming_the_column(xrp_candles: pl.DataFrame) -> None:
    naive = xrp_candles.with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="'ts' is naive"):
        check_candles(naive, timeframe="1m", now=NOW)


# --- trades -----------------------------------------------------------------------------------


def test_real_trades_pass(xrp_trades: pl.DataFrame, testdata: Path) -> None:
    assert check_trades(xrp_trades, now=NOW).success
    raw = pl.read_parquet(testdata / "nautilus_trader" / "binance" / "btcusdt-trades.parquet")
    btc = raw.select(
        pl.lit("binance").alias("exchange"),
        pl.lit("BTC/USDT").alias("symbol"),
        pl.col("timestamp").dt.replace_time_zone("UTC")
        if raw.schema["timestamp"] == pl.Datetime("ns")
        else pl.col("timestamp"),
        pl.col("trade_id").cast(pl.String),
        pl.col("price").cast(pl.Float64),
        pl.col("quantity").cast(pl.Float64).alias("amount"),
        pl.when(pl.col("buyer_maker") == "True")
        .then(pl.lit("sell"))
        .otherwise(pl.lit("buy"))
        .alias("side"),
    ).rename({"timestamp": "ts"})
    outcome = check_trades(btc, now=NOW)
    assert outcome.success and outcome.rows == 2001, [f.line() for f in outcome.failures]


def test_broken_trades_name_each_rule_and_row(xrp_trades: pl.DataFrame) -> None:
    t = xrp_trades
    broken = set_at(t, 10, amount=-5.0)
    broken = set_at(broken, 20, side="hold")
    broken = set_at(broken, 30, trade_id="")
    broken = set_at(broken, 40, cost=t["cost"][40] * 3)
    broken = set_at(broken, 50, ts=t["ts"][50] - timedelta(hours=1))
    repeat = set_at(t[60:61], 0, price=t["price"][60] * 1.01)  # same id, other price
    broken = pl.concat([broken, repeat])
    outcome = check_trades(broken, now=NOW)
    assert rows_of(outcome, "trade.amount_positive") == {10}
    assert rows_of(outcome, "trade.side") == {20}
    assert rows_of(outcome, "trade.id_missing") == {30}
    assert 40 in rows_of(outcome, "trade.cost")
    assert {50, t.height} <= rows_of(outcome, "trade.ts_monotonic")
    assert rows_of(outcome, "trade.duplicate_key") == {60, t.height}


# --- order books and aggregates -----------------------------------------------------------------


def test_real_order_books_pass(real_books: pl.DataFrame) -> None:
    outcome = check_order_books(real_books, now=NOW)
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == real_books.height > 50


def test_broken_order_books_name_each_rule_and_row(real_books: pl.DataFrame) -> None:
    b = real_books
    crossed = b["bid_prices"][5].to_list()
    crossed[0] = b["ask_prices"][5][0] * 1.01
    unsorted = b["bid_prices"][15].to_list()
    unsorted[1], unsorted[2] = unsorted[2], unsorted[1]
    broken = set_at(b, 5, bid_prices=crossed)
    broken = set_at(broken, 15, bid_prices=unsorted)
    broken = set_at(broken, 25, imbalance_5=1.5)
    broken = set_at(broken, 35, spread=-0.1)
    broken = set_at(broken, 45, mid=b["ask_prices"][45][0] * 2)
    broken = set_at(broken, 55, bid_sizes=b["bid_sizes"][55].to_list()[:-1])
    outcome = check_order_books(broken, now=NOW)
    assert rows_of(outcome, "book.crossed") == {5}
    assert rows_of(outcome, "book.bids_descending") == {15}
    assert rows_of(outcome, "book.imbalance_range") == {25}
    assert 35 in rows_of(outcome, "book.spread_range")
    assert 45 in rows_of(outcome, "book.mid_inside")
    assert rows_of(outcome, "book.levels_mismatch") == {55}


@pytest.mark.parametrize("timeframe", ["1s", "1m"])
def test_real_order_book_aggregates_pass(real_books: pl.DataFrame, timeframe: str) -> None:
    aggs = book_aggregates(real_books, timeframe)
    outcome = check_order_book_aggregates(aggs, timeframe=timeframe)
    assert outcome.success, [f.line() for f in outcome.failures]
    assert outcome.rows == aggs.height > 0


def test_broken_order_book_aggregates_fail(real_books: pl.DataFrame) -> None:
    aggs = book_aggregates(real_books, "1s")
    broken = set_at(aggs, 3, mid_high=aggs["mid_low"][3] * 0.9)
    broken = set_at(broken, 6, snapshots=0)
    broken = set_at(broken, 9, ts=aggs["ts"][9] + timedelta(milliseconds=250))
    broken = set_at(broken, 12, imbalance_10_mean=-1.2)
    outcome = check_order_book_aggregates(pl.concat([broken, broken[:1]]), timeframe="1s")
    assert 3 in rows_of(outcome, "book_agg.mid_bounds")
    assert rows_of(outcome, "book_agg.snapshots") == {6}
    assert rows_of(outcome, "book_agg.ts_aligned") == {9}
    assert rows_of(outcome, "book_agg.imbalance_range") == {12}
    assert rows_of(outcome, "book_agg.duplicate_key") == {0, aggs.height}


def test_trade_flow_of_real_trades_passes_and_broken_fails(xrp_trades: pl.DataFrame) -> None:
    flow = trade_flow(xrp_trades)
    assert check_trade_flow(flow).success
    broken = set_at(set_at(flow, 4, buy_volume=-1.0), 8, vwap=0.0)
    outcome = check_trade_flow(broken, policy=QualityPolicy())
    assert rows_of(outcome, "flow.nonnegative") == {4}
    assert rows_of(outcome, "flow.vwap") == {8}
