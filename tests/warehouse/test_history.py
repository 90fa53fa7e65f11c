"""Order-book and trade history on real captures: validated writers (broken copies quarantined)
and the 1s/1m order-book aggregates and per-minute trade flow, equal to polars references."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.replay_data import load_cryptofeed_binance
from ats_pipelines.lib.book import L2Book
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.flows import StoreResult, store_order_books, store_trades
from tests.warehouse.conftest import MarketDefs, run_sync

BOOK_SYMBOLS = {
    "NKNUSDT": "NKN/USDT",
    "BLZETH": "BLZ/ETH",
    "LRCBTC": "LRC/BTC",
    "RUNEEUR": "RUNE/EUR",
}
BOOK_DAY = "2021-10-12"
TRADE_DAYS = ("2019-10-11", "2019-10-12", "2019-10-13")


def rebuilt_books(testdata: Path) -> dict[str, pl.DataFrame]:
    """Top-20 snapshots after every depth diff of the real Binance capture (REST snapshot plus
    diffs, rebuilt with lib.book), per unified symbol; metrics of the whole local book."""
    data = load_cryptofeed_binance(
        testdata / "cryptofeed" / "BINANCE.ws.1.0", testdata / "cryptofeed" / "BINANCE.http.0.0"
    )
    out = {}
    for symbol_id, (snapshot, diffs) in data.items():
        book = L2Book(symbol_id)
        book.load_snapshot(snapshot.last_update_id, snapshot.bids, snapshot.asks)
        rows = []
        for diff in diffs:
            book.apply(diff.first_id, diff.last_id, diff.bids, diff.asks)
            top = book.snapshot(20)
            rows.append(
                {
                    "ts": datetime.fromtimestamp(diff.event_time / 1000, UTC),
                    "bid_prices": top.bid_prices,
                    "bid_sizes": top.bid_sizes,
                    "ask_prices": top.ask_prices,
                    "ask_sizes": top.ask_sizes,
                    "sequence": diff.last_id,
                    **top.metrics._asdict(),
                }
            )
        # two diffs in one millisecond: the later book is the one at that time
        out[BOOK_SYMBOLS[symbol_id]] = pl.DataFrame(rows).unique(
            "ts", keep="last", maintain_order=True
        )
    return out


class History:
    def __init__(
        self,
        md: MarketDefs,
        books: dict[str, pl.DataFrame],
        trades: pl.DataFrame,
        stored: dict[str, StoreResult],
    ) -> None:
        self.md, self.books, self.trades, self.stored = md, books, trades, stored

    @property
    def exchange(self) -> str:
        return self.md.settings.exchange


@pytest.fixture(scope="module")
def history(
    testdata: Path, db_url: str, synthetic_emulator: Any, dagster_instance: dg.DagsterInstance
) -> Iterator[History]:
    """Real trades (XRP/ETH) and rebuilt real books stored under a fresh exchange name."""
    exchange = f"h{uuid.uuid4().hex[:10]}"
    books = rebuilt_books(testdata)
    trades = pl.read_parquet(testdata / "freqtrade" / "XRP_ETH-trades.parquet")
    settings = MarketDataSettings(
        exchange=exchange, symbols=("XRP/ETH", *books), start_date="2019-10-01", exchange_url=None
    )
    md = MarketDefs(settings, db_url, synthetic_emulator, dagster_instance)

    async def load() -> dict[str, StoreResult]:
        async with connection(db_url) as conn:
            stored = {
                "XRP/ETH": await store_trades(
                    conn, trades, exchange=exchange, symbol="XRP/ETH", source="testdata"
                )
            }
            for symbol, frame in books.items():
                stored[symbol] = await store_order_books(
                    conn, frame, exchange=exchange, symbol=symbol, source="testdata"
                )
            return stored

    yield History(md, books, trades, run_sync(load()))


def _meta(result: dg.ExecuteInJobResult, node: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_writers_store_every_valid_row_once(
    history: History, query: Callable[..., list[Any]]
) -> None:
    assert history.stored["XRP/ETH"].write.inserted == history.trades.height == 12_477
    for symbol, frame in history.books.items():
        assert history.stored[symbol].write.inserted == frame.height
        assert history.stored[symbol].rejected == 0
    rows = query(
        "SELECT mid, imbalance_5, bid_depth_5pct FROM market.order_book_snapshots "
        "WHERE exchange = $1 AND symbol = 'NKN/USDT' ORDER BY ts",
        history.exchange,
    )
    frame = history.books["NKN/USDT"]
    assert [r["mid"] for r in rows] == frame["mid"].to_list()
    assert [r["bid_depth_5pct"] for r in rows] == frame["bid_depth_5pct"].to_list()


def test_trade_flow_equals_a_polars_reference(
    history: History, query: Callable[..., list[Any]]
) -> None:
    md = history.md
    first = _meta(
        md.materialize(
            ["trade_flow_1m"], first=f"{TRADE_DAYS[0]}|XRP/ETH", last=f"{TRADE_DAYS[-1]}|XRP/ETH"
        ),
        "trade_flow_1m",
    )
    assert first["rows_inserted"] == 2469 and first["days"] == 3
    again = _meta(
        md.materialize(["trade_flow_1m"], partition=f"{TRADE_DAYS[1]}|XRP/ETH"), "trade_flow_1m"
    )
    assert (again["rows_inserted"], again["rows_updated"]) == (0, 0)

    t = history.trades.with_columns(
        pl.from_epoch("timestamp", time_unit="ms")
        .dt.replace_time_zone("UTC")
        .dt.truncate("1m")
        .alias("ts")
    )
    expected = (
        t.group_by("ts")
        .agg(
            pl.col("amount").filter(pl.col("side") == "buy").sum().alias("buy_volume"),
            pl.col("amount").filter(pl.col("side") == "sell").sum().alias("sell_volume"),
            (pl.col("side") == "buy").sum().cast(pl.Int64).alias("buy_count"),
            (pl.col("side") == "sell").sum().cast(pl.Int64).alias("sell_count"),
            (pl.col("cost").sum() / pl.col("amount").sum()).alias("vwap"),
        )
        .sort("ts")
    )
    rows = query(
        "SELECT ts, buy_volume, sell_volume, buy_count, sell_count, vwap FROM "
        "market.trade_flow_1m WHERE exchange = $1 ORDER BY ts",
        history.exchange,
    )
    stored = pl.DataFrame([dict(r) for r in rows]).with_columns(
        pl.col("ts").dt.cast_time_unit("ns"),
        pl.col("buy_count").cast(pl.Int64),
        pl.col("sell_count").cast(pl.Int64),
    )
    expected = expected.with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    exact = ["ts", "buy_volume", "sell_volume", "buy_count", "sell_count"]
    assert stored.select(exact).equals(expected.select(exact))
    ratio = (stored["vwap"] / expected["vwap"] - 1).abs().max()
    assert ratio is not None and ratio < 1e-12  # type: ignore[operator]


def test_order_book_aggregates_equal_a_polars_reference(
    history: History, query: Callable[..., list[Any]]
) -> None:
    md = history.md
    for symbol in history.books:
        result = md.materialize(
            ["order_book_1s_agg", "order_book_1m_agg"], partition=f"{BOOK_DAY}|{symbol}"
        )
        assert _meta(result, "order_book_1s_agg")["rows_inserted"] > 0
        assert _meta(result, "order_book_1m_agg")["rows_inserted"] > 0
    for symbol, frame in history.books.items():
        for every, table in (("1s", "order_book_1s_agg"), ("1m", "order_book_1m_agg")):
            expected = (
                frame.sort("ts")
                .group_by(pl.col("ts").dt.truncate(every).alias("bucket"), maintain_order=True)
                .agg(
                    pl.len().cast(pl.Int64).alias("snapshots"),
                    pl.col("mid").first().alias("mid_open"),
                    pl.col("mid").max().alias("mid_high"),
                    pl.col("mid").min().alias("mid_low"),
                    pl.col("mid").last().alias("mid_close"),
                    pl.col("spread").mean().alias("spread_mean"),
                    pl.col("spread").max().alias("spread_max"),
                    pl.col("imbalance_1").mean().alias("imbalance_1_mean"),
                    pl.col("imbalance_10").mean().alias("imbalance_10_mean"),
                    pl.col("ask_depth_5pct").mean().alias("ask_depth_5pct_mean"),
                )
            )
            rows = query(
                f"SELECT ts, snapshots, mid_open, mid_high, mid_low, mid_close, "
                f"spread_mean, spread_max, imbalance_1_mean, imbalance_10_mean, "
                f"ask_depth_5pct_mean FROM market.{table} WHERE exchange = $1 AND "
                "symbol = $2 ORDER BY ts",
                history.exchange,
                symbol,
            )
            assert [r["ts"] for r in rows] == expected["bucket"].to_list(), (symbol, every)
            for column in (
                "snapshots",
                "mid_open",
                "mid_high",
                "mid_low",
                "mid_close",
                "spread_max",
            ):
                assert [r[column] for r in rows] == expected[column].to_list(), column
            for column in (
                "spread_mean",
                "imbalance_1_mean",
                "imbalance_10_mean",
                "ask_depth_5pct_mean",
            ):
                got, want = [r[column] for r in rows], expected[column].to_list()
                assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (symbol, every, column)


def test_broken_copies_of_real_rows_are_quarantined(
    testdata: Path, db_url: str, query: Callable[..., list[Any]]
) -> None:
    exchange = f"q{uuid.uuid4().hex[:10]}"
    trades = pl.read_parquet(testdata / "freqtrade" / "XRP_ETH-trades.parquet").head(50)
    broken_trades = trades.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("amount")).alias("amount"),
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.lit("hold"))
        .otherwise(pl.col("side"))
        .alias("side"),
    )
    book = (
        rebuilt_books(testdata)["NKN/USDT"]
        .head(10)
        .drop(
            "mid",
            "spread",
            "spread_bps",
            "imbalance_1",
            "imbalance_5",
            "imbalance_10",
            "bid_depth_5pct",
            "ask_depth_5pct",
        )
    )
    bids = book["bid_prices"].to_list()
    asks = book["ask_prices"].to_list()
    sizes = book["ask_sizes"].to_list()
    bids[1] = [bids[1][1], bids[1][0], *bids[1][2:]]  # not descending
    asks[2] = [bids[2][0] - 1e-4, *asks[2][1:]]  # best ask below best bid: crossed
    sizes[4] = [0.0, *sizes[4][1:]]  # a zero size
    broken_book = book.with_columns(
        pl.Series("bid_prices", bids), pl.Series("ask_prices", asks), pl.Series("ask_sizes", sizes)
    )

    async def body() -> tuple[StoreResult, StoreResult]:
        async with connection(db_url) as conn:
            return (
                await store_trades(
                    conn, broken_trades, exchange=exchange, symbol="XRP/ETH", source="rest"
                ),
                await store_order_books(
                    conn, broken_book, exchange=exchange, symbol="NKN/USDT", source="stream"
                ),
            )

    trade_result, book_result = run_sync(body())
    assert (trade_result.write.inserted, trade_result.rejected) == (48, 2)
    assert (book_result.write.inserted, book_result.rejected) == (7, 3)
    rows = query(
        "SELECT dataset, rule, source FROM ops.quarantine WHERE exchange = $1 "
        "ORDER BY dataset, rule",
        exchange,
    )
    assert [(r["dataset"], r["rule"], r["source"]) for r in rows] == [
        ("order_book", "book.bids_descending", "stream"),
        ("order_book", "book.crossed", "stream"),
        ("order_book", "book.size_positive", "stream"),
        ("trades", "trade.amount_positive", "rest"),
        ("trades", "trade.side", "rest"),
    ]
