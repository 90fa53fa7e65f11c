"""DataValidator: real data passes; broken copies fail with the right rule and a reason naming
the row; the per-message checks agree with the frame checks; quarantine writes once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import polars as pl
import pytest

from ats_pipelines.db.quarantine import quarantine
from ats_pipelines.lib.validation import (
    REJECT_SCHEMA,
    RULES,
    DataValidator,
    ValidationResult,
)

CLOCK = datetime(2026, 1, 1, tzinfo=UTC)
V = DataValidator(now=lambda: CLOCK)
Mutation = Callable[[pl.DataFrame], pl.DataFrame]


def _at(row: int, column: str, value: object) -> Mutation:
    """Set ``column`` to ``value`` in one row, keeping the dtype where it can."""

    def apply(frame: pl.DataFrame) -> pl.DataFrame:
        dtype = frame.schema[column]
        new = pl.lit(value, dtype=None if isinstance(value, str) and dtype != pl.String else dtype)
        return frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row).then(new).otherwise(pl.col(column)).alias(column)
        )

    return apply


def _pairs(result: ValidationResult) -> set[tuple[int, str]]:
    return set(result.rejected.select("row", "rule").iter_rows())


def _assert_only(
    result: ValidationResult, row: int, rules: set[str], location: str, mentions: str
) -> None:
    assert _pairs(result) == {(row, r) for r in rules}
    for reason, where in result.rejected.select("reason", "location").iter_rows():
        assert where == location and reason.startswith(location + ":")
        assert mentions in reason, reason
    assert result.rejected_rows == 1
    assert set(result.rejected["rule"]) <= set(RULES)


# --- candles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candles(testdata: Path) -> pl.DataFrame:
    return pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-1m.feather")


@pytest.mark.parametrize(
    ("path", "timeframe", "require_volume"),
    [
        ("XRP_ETH-1m.feather", "1m", True),
        ("XRP_ETH-5m.feather", "5m", True),
        ("ETH_BTC-5m.feather", "5m", True),
        ("UNITTEST_BTC-30m.feather", "30m", True),
        ("futures/XRP_USDT_USDT-1h-futures.feather", "1h", True),
        ("futures/XRP_USDT_USDT-5m-futures.feather", "5m", True),
        # mark-price candles carry no volume (null): allowed when volume is not required
        ("futures/XRP_USDT_USDT-1h-mark.feather", "1h", False),
        ("futures/XRP_USDT_USDT-8h-mark.feather", "8h", False),
    ],
)
def test_real_candles_pass(testdata: Path, path: str, timeframe: str, require_volume: bool) -> None:
    frame = pl.read_ipc(testdata / "freqtrade" / path)
    result = V.candles(
        frame,
        timeframe=timeframe,
        exchange="binance",
        symbol="X/Y",
        location=path,
        require_volume=require_volume,
    )
    assert result.accepted.height == frame.height
    assert result.rejected.is_empty() and result.duplicates.is_empty()
    assert result.accepted.equals(frame)


def test_real_json_candles_with_epoch_ms_pass(testdata: Path) -> None:
    rows = json.loads((testdata / "freqtrade" / "UNITTEST_BTC-1m.json").read_text())
    frame = pl.DataFrame(
        rows, schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    )
    result = V.candles(frame, timeframe="1m")
    assert result.accepted.height == 13_681 and result.rejected.is_empty()


def test_mark_candles_need_volume_when_required(testdata: Path) -> None:
    frame = pl.read_ipc(testdata / "freqtrade" / "futures" / "XRP_USDT_USDT-1h-mark.feather")
    result = V.candles(frame, timeframe="1h", location="mark.feather")
    assert set(result.rejected["rule"]) == {"ohlcv.volume"}
    assert result.rejected_rows == frame.height and "volume null" in result.rejected["reason"][0]
    assert {v.rule for v in V.check_candle(0, "1h", 1, 1, 1, 1, None)} == {
        "ohlcv.ts_range",
        "ohlcv.volume",
    }


def test_real_funding_rates_are_not_candles(testdata: Path) -> None:
    """freqtrade stores funding in `open`, zeros elsewhere, at 00:00:00.017-ish times."""
    path = "futures/XRP_USDT_USDT-8h-funding_rate.feather"
    frame = pl.read_ipc(testdata / "freqtrade" / path)
    result = V.candles(frame, timeframe="8h", location=path)
    assert result.accepted.is_empty()
    by_rule = dict(result.rejected["rule"].value_counts().iter_rows())
    assert by_rule == {"ohlcv.price_positive": 91, "ohlcv.ts_aligned": 59}
    reasons = result.rejected.filter(pl.col("rule") == "ohlcv.ts_aligned")["reason"]
    assert any(".017+00:00 is not aligned to 8h" in r for r in reasons)


CANDLE_BREAKS = [
    # (mutation, row, rules, reason mentions)
    (_at(7, "high", 0.0014), 7, {"ohlcv.high_bounds", "ohlcv.high_low"}, "high 0.0014"),
    (_at(8, "low", 0.0016), 8, {"ohlcv.low_bounds", "ohlcv.high_low"}, "low 0.0016"),
    (_at(9, "close", 0.00142), 9, {"ohlcv.high_bounds"}, "close 0.00142"),
    (_at(10, "open", 0.00139), 10, {"ohlcv.low_bounds"}, "open 0.00139"),
    (_at(11, "open", -1.0), 11, {"ohlcv.price_positive"}, "open -1.0"),
    (_at(12, "close", float("nan")), 12, {"ohlcv.price_positive"}, "close NaN"),
    (_at(13, "high", float("inf")), 13, {"ohlcv.price_positive"}, "high inf"),
    (_at(14, "low", None), 14, {"ohlcv.price_positive"}, "low null"),
    (_at(15, "volume", -5.0), 15, {"ohlcv.volume"}, "volume -5.0"),
    (_at(16, "volume", float("inf")), 16, {"ohlcv.volume"}, "volume inf"),
    (
        _at(17, "date", datetime(2019, 10, 11, 0, 30, 30, tzinfo=UTC)),
        17,
        {"ohlcv.ts_aligned"},
        "2019-10-11T00:30:30.000+00:00 is not aligned to 1m",
    ),
    (
        _at(18, "date", datetime(2026, 1, 1, 0, 1, tzinfo=UTC)),
        18,
        {"ohlcv.ts_future"},
        "2026-01-01T00:01:00.000+00:00 is in the future",
    ),
    (
        _at(19, "date", datetime(2001, 1, 1, tzinfo=UTC)),
        19,
        {"ohlcv.ts_range"},
        "2001-01-01T00:00:00.000+00:00 is before",
    ),
    (_at(20, "date", None), 20, {"ohlcv.ts_missing"}, "timestamp is missing"),
]


@pytest.mark.parametrize(("mutate", "row", "rules", "mentions"), CANDLE_BREAKS)
def test_broken_candles(
    candles: pl.DataFrame, mutate: Mutation, row: int, rules: set[str], mentions: str
) -> None:
    broken = mutate(candles)
    result = V.candles(
        broken, timeframe="1m", exchange="binance", symbol="XRP/ETH", location="XRP_ETH-1m.feather"
    )
    _assert_only(result, row, rules, f"XRP_ETH-1m.feather:row {row}", mentions)
    assert result.accepted.height == candles.height - 1
    rejected = result.rejected.row(0, named=True)
    assert (rejected["exchange"], rejected["symbol"], rejected["timeframe"]) == (
        "binance",
        "XRP/ETH",
        "1m",
    )
    payload = json.loads(rejected["payload"])
    assert set(payload) == set(candles.columns)
    # the stream's per-message check finds the same rules
    r = broken.row(row, named=True)
    ts = None if r["date"] is None else int(r["date"].timestamp() * 1000)
    found = V.check_candle(
        ts, "1m", r["open"], r["high"], r["low"], r["close"], r["volume"], location=f"msg {row}"
    )
    assert {v.rule for v in found} == rules
    assert all(mentions in v.reason for v in found if not v.rule.startswith("ohlcv.ts"))


def test_timeframe_rules(candles: pl.DataFrame) -> None:
    frame = candles.head(4).with_columns(pl.Series("timeframe", ["1m", "5m", "1x", None]))
    result = V.candles(frame)
    # row 1 (00:01) is not a 5-minute boundary; rows 2-3 have no valid timeframe
    assert _pairs(result) == {
        (1, "ohlcv.ts_aligned"),
        (2, "ohlcv.timeframe"),
        (3, "ohlcv.timeframe"),
    }
    assert "timeframe 1x" in result.rejected.filter(pl.col("row") == 2)["reason"][0]
    assert {v.rule for v in V.check_candle(0, "1x", 1, 1, 1, 1, 1)} == {
        "ohlcv.ts_range",
        "ohlcv.timeframe",
    }


def test_naive_and_foreign_timezones(candles: pl.DataFrame) -> None:
    naive = candles.head(3).with_columns(pl.col("date").dt.replace_time_zone(None))
    result = V.candles(naive, timeframe="1m", location="naive.parquet")
    assert _pairs(result) == {(i, "ohlcv.ts_timezone") for i in range(3)}
    assert (
        "naive.parquet:row 0: ts 2019-10-11T00:00:00.000 has no time zone"
        in result.rejected["reason"][0]
    )
    tokyo = candles.head(3).with_columns(pl.col("date").dt.convert_time_zone("Asia/Tokyo"))
    result = V.candles(tokyo, timeframe="1m")
    assert result.rejected.is_empty()  # aware: the same instants, handed back in UTC
    assert result.accepted["date"].equals(candles.head(3)["date"])


def test_future_tolerance(candles: pl.DataFrame) -> None:
    last = candles["date"].max()
    assert isinstance(last, datetime)
    frame = candles.tail(1)
    assert V.candles(frame, timeframe="1m").accepted.height == 1
    early = DataValidator(now=lambda: last - timedelta(seconds=4))  # within the 5 s default
    assert early.candles(frame, timeframe="1m").accepted.height == 1
    strict = DataValidator(now=lambda: last - timedelta(seconds=4), future_tolerance=timedelta())
    assert _pairs(strict.candles(frame, timeframe="1m")) == {(0, "ohlcv.ts_future")}


def test_duplicates_reported_separately(candles: pl.DataFrame) -> None:
    frame = pl.concat(
        [
            candles.head(5),
            candles.slice(1, 1),
            candles.slice(3, 1).with_columns(pl.col("volume") + 1),
        ]
    )
    result = V.candles(frame, timeframe="1m", location="f")
    assert result.rejected.is_empty()
    assert result.accepted.equals(candles.head(5))
    dups = result.duplicates.select("row", "rule", "reason").rows()
    assert dups == [
        (5, "ohlcv.duplicate_key", "f:row 5: repeats the key of row 1 (same values)"),
        (6, "ohlcv.duplicate_conflict", "f:row 6: repeats the key of row 3 with different values"),
    ]
    assert result.quarantinable()["rule"].to_list() == ["ohlcv.duplicate_conflict"]


def test_location_column_and_bad_inputs(candles: pl.DataFrame) -> None:
    frame = candles.head(2).with_columns(pl.Series("msg", ["m-1", "m-2"]))
    result = V.candles(_at(1, "open", 0.0)(frame), timeframe="1m", location_col="msg")
    assert result.rejected["location"].to_list() == ["m-2"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['volume'\]"):
        V.candles(candles.drop("volume"), timeframe="1m")
    with pytest.raises(ValueError, match="'date' has type String"):
        V.candles(candles.with_columns(pl.col("date").cast(pl.String)), timeframe="1m")


def test_payload_and_hash_are_stable(candles: pl.DataFrame) -> None:
    broken = _at(3, "close", float("nan"))(candles.head(5))
    first = V.candles(broken, timeframe="1m").rejected
    moved = V.candles(
        pl.concat([candles.slice(10, 2), broken.slice(3, 1)]), timeframe="1m"
    ).rejected
    assert json.loads(first["payload"][0])["close"] == "NaN"  # JSON has no NaN; jsonb neither
    assert first["row_hash"][0] == moved["row_hash"][0]  # same row, other place: same hash
    assert first["row"][0] == 3 and moved["row"][0] == 2
    assert dict(first.schema) == REJECT_SCHEMA


# --- trades ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trades(testdata: Path) -> pl.DataFrame:
    return pl.read_parquet(testdata / "freqtrade" / "XRP_ETH-trades.parquet")


def test_real_trades_pass(testdata: Path, trades: pl.DataFrame) -> None:
    result = V.trades(trades, exchange="binance", symbol="XRP/ETH")
    assert result.accepted.height == 12_477 and result.rejected.is_empty()
    nautilus = pl.read_parquet(testdata / "nautilus_trader" / "binance" / "btcusdt-trades.parquet")
    nautilus = nautilus.rename({"quantity": "amount"}).with_columns(
        pl.when(pl.col("buyer_maker") == "True")
        .then(pl.lit("sell"))
        .otherwise(pl.lit("buy"))
        .alias("side")
    )
    result = V.trades(nautilus, exchange="binance", symbol="BTC/USDT")
    assert result.accepted.height == 2_001 and result.rejected.is_empty()


def test_real_kraken_seconds_are_not_milliseconds(testdata: Path) -> None:
    path = testdata / "freqtrade" / "kraken" / "trades_csv" / "BCHEUR.csv"
    raw = pl.read_csv(path, has_header=False, new_columns=["ts", "price", "amount"])
    raw = raw.with_columns(pl.int_range(pl.len()).cast(pl.String).alias("id"))
    wrong = V.trades(raw, location="BCHEUR.csv")
    assert set(wrong.rejected["rule"]) == {"trade.ts_range"} and wrong.rejected_rows == 148
    assert "ts 1970-01-20" in wrong.rejected["reason"][0]
    right = V.trades(raw.with_columns(pl.col("ts") * 1000), location="BCHEUR.csv")
    assert right.accepted.height == 148


TRADE_BREAKS = [
    (_at(3, "price", 0.0), 3, {"trade.price_positive"}, "price 0.0"),
    (_at(4, "amount", float("nan")), 4, {"trade.amount_positive"}, "amount NaN"),
    (_at(5, "amount", -2.0), 5, {"trade.amount_positive"}, "amount -2.0"),
    (_at(6, "side", "long"), 6, {"trade.side"}, "side 'long'"),
    (_at(7, "id", None), 7, {"trade.id_missing"}, "trade id is missing"),
    (_at(8, "id", ""), 8, {"trade.id_missing"}, "trade id is missing"),
    (_at(9, "timestamp", 1_900_000_000_000), 9, {"trade.ts_future"}, "2030-03-17"),
    (_at(10, "timestamp", 1_570_752_011), 10, {"trade.ts_range"}, "1970-01-19"),
]


@pytest.mark.parametrize(("mutate", "row", "rules", "mentions"), TRADE_BREAKS)
def test_broken_trades(
    trades: pl.DataFrame, mutate: Mutation, row: int, rules: set[str], mentions: str
) -> None:
    broken = mutate(trades)
    result = V.trades(broken, exchange="binance", symbol="XRP/ETH", location="trades.parquet")
    _assert_only(result, row, rules, f"trades.parquet:row {row}", mentions)
    r = broken.row(row, named=True)
    found = V.check_trade(r["timestamp"], r["price"], r["amount"], r["side"], r["id"])
    assert {v.rule for v in found} == rules
    assert all(mentions in v.reason for v in found)


def test_trade_duplicates(trades: pl.DataFrame) -> None:
    frame = pl.concat(
        [trades.head(3), trades.slice(0, 1), trades.slice(2, 1).with_columns(pl.col("price") * 2)]
    )
    result = V.trades(frame)
    assert result.accepted.height == 3
    assert result.duplicates.select("row", "rule").rows() == [
        (3, "trade.duplicate_key"),
        (4, "trade.duplicate_conflict"),
    ]


# --- order books -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def books(testdata: Path) -> pl.DataFrame:
    raw = pl.read_csv(
        testdata / "nautilus_trader" / "tardis" / "binance-futures_book_snapshot_25_BTCUSDT.csv"
    )
    levels = range(25)
    return raw.select(
        pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC").alias("ts"),
        pl.concat_list([f"bids[{i}].price" for i in levels]).alias("bid_prices"),
        pl.concat_list([f"bids[{i}].amount" for i in levels]).alias("bid_sizes"),
        pl.concat_list([f"asks[{i}].price" for i in levels]).alias("ask_prices"),
        pl.concat_list([f"asks[{i}].amount" for i in levels]).alias("ask_sizes"),
    )


def _edit(row: int, column: str, fn: Callable[[list[float]], list[float]]) -> Mutation:
    def apply(frame: pl.DataFrame) -> pl.DataFrame:
        values = frame[column].to_list()
        values[row] = fn(list(values[row]))
        return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))

    return apply


def _swap(i: int) -> Callable[[list[float]], list[float]]:
    return lambda v: [*v[:i], v[i + 1], v[i], *v[i + 2 :]]


BOOK_BREAKS = [
    (_edit(1, "bid_prices", _swap(3)), 1, {"book.bids_descending"}, "at level 4"),
    (_edit(2, "ask_prices", _swap(0)), 2, {"book.asks_ascending"}, "at level 1"),
    (
        _edit(3, "ask_prices", lambda v: [-v[0], *v[1:]]),
        3,
        {"book.price_positive"},
        "ask price at level 0 is -",
    ),
    (
        _edit(4, "bid_sizes", lambda v: [*v[:5], 0.0, *v[6:]]),
        4,
        {"book.size_positive"},
        "bid size at level 5 is 0.0",
    ),
    (
        _edit(5, "bid_sizes", lambda v: v[:-1]),
        5,
        {"book.levels_mismatch"},
        "bid 25 prices but 24 sizes",
    ),
    (
        _edit(6, "bid_prices", lambda v: [v[0] + 1_000.0, *v[1:]]),
        6,
        {"book.crossed"},
        "is not below best ask",
    ),
]


@pytest.mark.parametrize(("mutate", "row", "rules", "mentions"), BOOK_BREAKS)
def test_broken_books(
    books: pl.DataFrame, mutate: Mutation, row: int, rules: set[str], mentions: str
) -> None:
    assert V.order_books(books).accepted.height == 10  # the real snapshots pass
    broken = mutate(books)
    result = V.order_books(broken, exchange="binance", symbol="BTC/USDT", location="tardis.csv")
    _assert_only(result, row, rules, f"tardis.csv:row {row}", "")
    assert any(mentions in reason for reason in result.rejected["reason"])
    r = broken.row(row, named=True)
    if len(r["bid_prices"]) == len(r["bid_sizes"]):  # the per-message form pairs levels
        bids = list(zip(r["bid_prices"], r["bid_sizes"], strict=True))
        asks = list(zip(r["ask_prices"], r["ask_sizes"], strict=True))
        found = V.check_book(bids, asks)
        assert {v.rule for v in found} == rules
        assert any(mentions in v.reason for v in found)


def test_book_duplicates(books: pl.DataFrame) -> None:
    frame = pl.concat([books, books.slice(2, 1)])
    result = V.order_books(frame)
    assert result.duplicates.select("row", "rule").rows() == [(10, "book.duplicate_key")]


# --- quarantine --------------------------------------------------------------------------------


async def test_quarantine_writes_each_rejection_once(
    conn: asyncpg.Connection, candles: pl.DataFrame
) -> None:
    broken = _at(7, "high", 0.0014)(_at(12, "close", float("nan"))(candles.head(20)))
    result = V.candles(
        broken, timeframe="1m", exchange="binance", symbol="XRP/ETH", location="XRP_ETH-1m.feather"
    )
    rejected = result.quarantinable()
    assert rejected.height == 3  # row 7 breaks two rules
    source = f"test-{uuid.uuid4().hex[:8]}"
    try:
        assert await quarantine(conn, rejected, dataset="candles", source=source, batch_id=42) == 3
        assert await quarantine(conn, rejected, dataset="candles", source=source) == 0
        # the same bad rows found again later in a bigger batch: still only once
        again = V.candles(
            pl.concat([broken, candles.slice(20, 5)]),
            timeframe="1m",
            exchange="binance",
            symbol="XRP/ETH",
            location="XRP_ETH-1m.feather",
        )
        assert await quarantine(conn, again.rejected, dataset="candles", source=source) == 0
        rows = await conn.fetch(
            "SELECT rule, reason, location, exchange, symbol, timeframe, ts, payload, batch_id"
            " FROM ops.quarantine WHERE source = $1 ORDER BY location, rule",
            source,
        )
        assert [(r["rule"], r["location"]) for r in rows] == [
            ("ohlcv.price_positive", "XRP_ETH-1m.feather:row 12"),
            ("ohlcv.high_bounds", "XRP_ETH-1m.feather:row 7"),
            ("ohlcv.high_low", "XRP_ETH-1m.feather:row 7"),
        ]
        assert {r["batch_id"] for r in rows} == {42}
        assert rows[0]["ts"] == candles["date"][12]
        assert (rows[0]["exchange"], rows[0]["symbol"], rows[0]["timeframe"]) == (
            "binance",
            "XRP/ETH",
            "1m",
        )
        assert json.loads(rows[0]["payload"])["close"] == "NaN"
        assert "close NaN" in rows[0]["reason"]
    finally:
        await conn.execute("DELETE FROM ops.quarantine WHERE source = $1", source)


async def test_quarantine_nothing_and_wrong_shape(conn: asyncpg.Connection) -> None:
    empty = pl.DataFrame(schema=REJECT_SCHEMA)
    assert await quarantine(conn, empty, dataset="candles", source="x") == 0
    with pytest.raises(ValueError, match="row_hash"):
        await quarantine(
            conn,
            pl.DataFrame({"rule": ["r"]}).with_columns(
                *[
                    pl.lit(None, pl.String).alias(c)
                    for c in ("reason", "location", "exchange", "symbol", "timeframe", "payload")
                ],
                pl.lit(None, pl.Datetime("us", "UTC")).alias("ts"),
            ),
            dataset="candles",
            source="x",
        )
