"""Reconciliation against the exchange emulator replaying the recorded Binance XRP/ETH data
(stock ccxt over loopback), and CEX vs DEX prices; then stream freshness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.kline_faults import install_kline_faults
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.testing import running_emulator
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.lib.bars import aggregate_trades
from ats_pipelines.quality.freshness import judge, stream_freshness
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.reconcile import asset_of
from ats_pipelines.quality.reconcile_sources import cex_vs_dex, history_vs_rest, stream_vs_rest
from tests.quality.conftest import NOW, migrated_database

POLICY = QualityPolicy()
STREAM = (datetime(2019, 10, 11, 6, tzinfo=UTC), datetime(2019, 10, 11, 12, tzinfo=UTC))
HISTORY = (datetime(2019, 10, 12, 12, tzinfo=UTC), datetime(2019, 10, 12, 18, tzinfo=UTC))
CANDLE_COLUMNS = (
    "symbol",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "taker_buy_volume",
)


def stream_bars(trades: pl.DataFrame, window: tuple[datetime, datetime]) -> pl.DataFrame:
    """What the streaming service builds from these trades (the platform's aggregator)."""
    bars = aggregate_trades(
        trades, ["1m"], exchange="binance", symbol="XRP/ETH", ts_col="ts", id_col="trade_id"
    )
    return (
        bars.filter(pl.col("ts").is_between(*window, closed="left"))
        .select(*CANDLE_COLUMNS)
        .with_columns(pl.col("ts").dt.cast_time_unit("us"))
    )


@pytest.fixture
async def client(testdata: Path) -> AsyncIterator[tuple[ExchangeClient, object]]:
    config = EmulatorConfig(replay_dir=testdata, synthetic=None, birdeye=None)
    async with running_emulator(config) as emulator:
        client = ExchangeClient(build_exchange("binance", rest_url=emulator.rest_url))
        try:
            yield client, emulator
        finally:
            await client.close()


async def test_stream_and_history_agree_with_rest_until_a_kline_differs(
    quality_db: str,
    exchange_name: str,
    xrp_trades: pl.DataFrame,
    xrp_candles: pl.DataFrame,
    client: tuple[ExchangeClient, object],
) -> None:
    rest_client, emulator = client
    history = xrp_candles.filter(pl.col("ts").is_between(*HISTORY, closed="left")).drop("exchange")
    wrong = history["ts"][7]
    history = history.with_columns(  # one migrated bar the cache got wrong (counted twice)
        pl.when(pl.col("ts") == wrong)
        .then(pl.col("volume") * 2)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    async with connection(quality_db) as conn:
        await bulk_write(
            conn,
            "market.candles",
            stream_bars(xrp_trades, STREAM).with_columns(
                pl.lit(exchange_name).alias("exchange"), pl.lit("stream").alias("source")
            ),
        )
        await bulk_write(
            conn,
            "market.candles",
            history.with_columns(
                pl.lit(exchange_name).alias("exchange"), pl.lit("legacy_cache").alias("source")
            ),
        )
        args = {"exchange": exchange_name, "symbols": ["XRP/ETH"], "policy": POLICY}
        first = await stream_vs_rest(
            conn, rest_client, start=STREAM[0], end=HISTORY[1], now=NOW, **args
        )
        assert first.passed, first.summary()
        assert (
            first.compared
            == xrp_candles.filter(pl.col("ts").is_between(*STREAM, closed="left")).height
            > 200
        )

        faults = install_kline_faults(emulator, "XRPETH")  # type: ignore[arg-type]
        minute = stream_bars(xrp_trades, STREAM)["ts"][17]
        faults.corrupt_minute(minute, close="0.00150000")
        second = await stream_vs_rest(
            conn, rest_client, start=STREAM[0], end=HISTORY[1], now=NOW, **args
        )
        assert not second.passed and second.disagreements.height == 1
        row = second.disagreements.row(0, named=True)
        assert (row["ts"], row["fields"], row["close_rest"]) == (minute, "close", 0.0015)
        assert row["close_stream"] != 0.0015

        past = await history_vs_rest(conn, rest_client, start=STREAM[0], end=HISTORY[1], **args)
        assert past.compared == history.height
        assert past.disagreements["ts"].to_list() == [wrong]
        assert past.disagreements["fields"].to_list() == ["volume"]


async def test_dex_prices_within_tolerance_of_the_cex_minute(
    make_database: object, xrp_trades: pl.DataFrame
) -> None:
    """DEX swaps of the same asset (wrapped ETH quote) at the CEX's minute VWAP plus 5 bps,
    then one swap 3 % off: only that minute is listed."""
    url = migrated_database(make_database, "ats_quality_dex")
    cex = stream_bars(xrp_trades, STREAM)
    dex = xrp_trades.filter(pl.col("ts").is_between(*STREAM, closed="left")).select(
        pl.lit("raydium").alias("exchange"),
        pl.lit("XRP/WETH").alias("symbol"),
        "ts",
        "trade_id",
        (pl.col("price") * 1.0005).alias("price"),
        "amount",
        "side",
        pl.lit("birdeye").alias("source"),
    )
    odd = dex.row(len(dex) // 2, named=True)
    async with connection(url) as conn:
        await bulk_write(
            conn,
            "market.candles",
            cex.with_columns(pl.lit("binance").alias("exchange"), pl.lit("stream").alias("source")),
        )
        await bulk_write(conn, "market.trades", dex)
        result = await cex_vs_dex(conn, start=STREAM[0], end=STREAM[1], policy=POLICY)
        assert result.passed and result.compared == cex.height
        await bulk_write(
            conn,
            "market.trades",
            [{**odd, "trade_id": "odd-swap", "price": odd["price"] * 1.03, "amount": 1e9}],
        )
        result = await cex_vs_dex(conn, start=STREAM[0], end=STREAM[1], policy=POLICY)
    assert result.disagreements.height == 1
    row = result.disagreements.row(0, named=True)
    assert row["ts"] == odd["ts"].replace(second=0, microsecond=0)
    assert (row["asset"], row["dex"], row["cex"]) == ("XRP/ETH", "raydium", "binance")
    assert 250 < row["deviation_bps"] < 310


@pytest.mark.parametrize(
    ("symbol", "asset"),
    [
        ("SOL/USDC", ("SOL", "USD")),
        ("WSOL/USDT", ("SOL", "USD")),
        ("XRP/ETH", ("XRP", "ETH")),
        ("BTC/USDT:USDT", ("BTC", "USD")),
        ("WETH/BTC", ("ETH", "BTC")),
    ],
)
def test_assets_pair_across_venues(symbol: str, asset: tuple[str, str]) -> None:
    assert asset_of(symbol) == asset


# --- freshness --------------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("beat", "bar", "trade", "fresh", "rule"),
    [
        (5, 60, 58, True, None),  # the bar of the minute that just closed
        (120, 60, 58, False, "freshness.heartbeat"),  # the shard stopped beating
        (5, 600, 30, False, "freshness.bars"),  # trades arrive, bars do not
        (5, 600, 630, True, None),  # quiet market: the last trade is in the last bar
        (5, None, None, False, "freshness.bars"),  # never wrote a bar
    ],
)
def test_freshness_verdicts(
    beat: int, bar: int | None, trade: int | None, fresh: bool, rule: str | None
) -> None:
    def ago(s: int | None) -> datetime | None:
        return None if s is None else T0 - timedelta(seconds=s)

    last_bar = ago(bar)
    verdict = judge(
        "0/1",
        "binance",
        "BTC/USDT",
        T0 - timedelta(seconds=beat),
        last_bar - timedelta(minutes=1) if last_bar else None,
        ago(trade),
        now=T0,
        policy=POLICY,
    )
    assert (verdict.fresh, verdict.rule) == (fresh, rule), verdict.reason


async def test_stream_freshness_from_heartbeats_and_bars(make_database: object) -> None:
    url = migrated_database(make_database, "ats_quality_fresh")
    async with connection(url) as conn:
        assert not (await stream_freshness(conn, now=T0, policy=POLICY)).passed
        await conn.execute(
            "INSERT INTO ops.stream_heartbeats (shard, exchange, symbols, started_at, last_beat) "
            "VALUES ('0/1', 'binance', $1, $2, $3)",
            ["BTC/USDT", "ETH/USDT"],
            T0 - timedelta(hours=1),
            T0 - timedelta(seconds=3),
        )
        minute = T0 - timedelta(minutes=1)
        bars = [
            {
                "exchange": "binance",
                "symbol": s,
                "timeframe": "1m",
                "ts": ts,
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0,
                "volume": 1.0,
                "source": "stream",
            }
            for s, ts in (("BTC/USDT", minute), ("ETH/USDT", minute - timedelta(minutes=9)))
        ]
        await bulk_write(conn, "market.candles", bars)
        await bulk_write(
            conn,
            "market.trades",
            [
                {
                    "exchange": "binance",
                    "symbol": "ETH/USDT",
                    "ts": T0 - timedelta(seconds=20),
                    "trade_id": "1",
                    "price": 1.0,
                    "amount": 1.0,
                    "source": "stream",
                }
            ],
        )
        verdict = await stream_freshness(conn, now=T0, policy=POLICY)
    assert not verdict.passed
    assert [(s.symbol, s.fresh) for s in verdict.symbols] == [
        ("BTC/USDT", True),
        ("ETH/USDT", False),
    ]
    assert "ETH/USDT" in verdict.summary and "trades arrived since" in verdict.summary
