"""Rollups of 1m candles: equal to the exchange's own klines (synthetic) and to the real XRP/ETH
5-minute file, equal to a plain GROUP BY and to the continuous-aggregate SQL, incremental (only
touched buckets), final-only, safe against transactions still running, and edition-neutral."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.emulator.server import Emulator, EmulatorConfig
from ats_pipelines.emulator.testing import ccxt_binance, emulator_in_thread
from ats_pipelines.lib.timeframes import to_timedelta
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.warehouse.backfill import backfill
from ats_pipelines.warehouse.bar_location import bars_relation
from ats_pipelines.warehouse.rollups import (
    CONTINUOUS,
    INCREMENTAL,
    levels,
    rollup_incremental,
    rollup_mode,
    server_edition,
)
from tests.warehouse.conftest import (
    DAY1,
    DAY2,
    DAY3,
    MarketDefs,
    key,
    market_settings,
    run_sync,
)

TIMEFRAMES = ("5m", "15m", "1h", "4h", "1d")
SYMBOLS = ("BTC/USDT", "ETH/USDT")
CAGG_SQL = Path(__file__).resolve().parents[2] / "sql" / "041_candle_rollups.timescale.sql"
COLUMNS = "ts, open, high, low, close, volume, quote_volume, trade_count, vwap, taker_buy_volume"


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def rolled_run(
    db_url: str, synthetic_emulator: Emulator, dagster_instance: dg.DagsterInstance
) -> Iterator[tuple[MarketDefs, dict]]:
    """Two days of both symbols backfilled (one ranged run per symbol) and rolled up; the
    rollup's metadata per timeframe."""
    md = MarketDefs(
        market_settings(f"r{uuid.uuid4().hex[:10]}", synthetic_emulator),
        db_url,
        synthetic_emulator,
        dagster_instance,
    )
    for symbol in SYMBOLS:
        md.materialize(["candles_1m"], first=key(DAY1, symbol), last=key(DAY2, symbol))
    result = md.materialize(["candles_5m"])
    materialized = result.asset_materializations_for_node("candle_rollups")
    yield (
        md,
        {
            tf: {k: v.value for k, v in materialized[i].metadata.items()}
            for i, tf in enumerate(TIMEFRAMES)
        },
    )


@pytest.fixture
def rolled(rolled_run: tuple[MarketDefs, dict]) -> MarketDefs:
    return rolled_run[0]


@pytest.fixture(scope="module")
def mode(db_url: str) -> str:
    """This server's rollup path (continuous aggregates under the timescale licence)."""

    async def body() -> str:
        async with connection(db_url) as conn:
            return await rollup_mode(conn)

    return run_sync(body())


def _stored(
    query: Callable[..., list[Any]], exchange: str, symbol: str, timeframe: str, mode: str
) -> list[list[Any]]:
    """Bars as every reader sees them (:mod:`ats_pipelines.warehouse.bar_location`)."""
    rows = query(
        "SELECT ts, open, high, low, close, volume FROM "
        f"{bars_relation(timeframe, mode)} WHERE exchange = $1 AND symbol = $2 ORDER BY ts",
        exchange,
        symbol,
    )
    return [
        [int(r["ts"].timestamp() * 1000), r["open"], r["high"], r["low"], r["close"], r["volume"]]
        for r in rows
    ]


async def _klines(
    emulator: Emulator, wanted: list[tuple[str, str]], start: int, end: int
) -> dict[tuple[str, str], list[list[Any]]]:
    """The exchange's own klines of each ``(symbol, timeframe)`` in ``[start, end)``."""
    exchange = ccxt_binance(emulator)
    try:
        out = {}
        for symbol, timeframe in wanted:
            rows = await exchange.fetch_ohlcv(
                symbol, timeframe, since=start, limit=1000, params={"endTime": end - 1}
            )
            out[(symbol, timeframe)] = [r for r in rows if r[0] < end]
        return out
    finally:
        await exchange.close()


def test_rolled_bars_equal_the_exchanges_own_klines(
    rolled_run: tuple[MarketDefs, dict],
    synthetic_emulator: Emulator,
    query: Callable[..., list[Any]],
    mode: str,
) -> None:
    rolled, meta = rolled_run
    assert {m["path"] for m in meta.values()} == {mode}
    if mode == INCREMENTAL:
        assert meta["5m"]["rows_inserted"] == 2 * 2 * 288 and meta["1d"]["rows_inserted"] == 4
    else:  # the aggregates are refreshed, not written row by row
        assert meta["5m"]["buckets_recomputed"] > 0 and meta["1d"]["buckets_recomputed"] > 0
    wanted = [(symbol, tf) for symbol in SYMBOLS for tf in TIMEFRAMES]
    expected = run_sync(_klines(synthetic_emulator, wanted, _ms(DAY1), _ms(DAY3)))
    for symbol, tf in wanted:
        assert (
            _stored(query, rolled.settings.exchange, symbol, tf, mode) == expected[(symbol, tf)]
        ), (
            symbol,
            tf,
        )


def test_rolled_bars_equal_a_plain_group_by_reference(
    rolled: MarketDefs, query: Callable[..., list[Any]], mode: str
) -> None:
    for tf in TIMEFRAMES:
        width = to_timedelta(tf)
        reference = query(
            "SELECT time_bucket($3::interval, ts) AS ts, first(open, ts) AS open, "
            "max(high) AS high, min(low) AS low, last(close, ts) AS close, "
            "sum(volume::numeric)::float8 AS volume, NULL::float8 AS quote_volume, "
            "NULL::bigint AS trade_count, NULL::float8 AS vwap, NULL::float8 AS taker_buy_volume "
            "FROM market.candles WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' "
            "GROUP BY 1 ORDER BY 1",
            rolled.settings.exchange,
            "BTC/USDT",
            width,
        )
        stored = query(
            f"SELECT {COLUMNS} FROM {bars_relation(tf, mode)} WHERE exchange = $1 AND "
            "symbol = $2 ORDER BY ts",
            rolled.settings.exchange,
            "BTC/USDT",
        )
        assert [tuple(r) for r in stored] == [tuple(r) for r in reference], tf


def _cagg_selects() -> dict[str, tuple[str, str | None]]:
    """timeframe -> (select body, source timeframe or None for 1m) from sql/041."""
    text = CAGG_SQL.read_text()
    out = {}
    for match in re.finditer(
        r"CREATE MATERIALIZED VIEW market\.candles_(\w+)\s+WITH \([^)]*\) "
        r"AS\s+(SELECT .*?)\s+WITH NO DATA;",
        text,
        re.S,
    ):
        body = match[2]
        source = re.search(r"FROM market\.candles_(\w+)", body)
        out[match[1]] = (body, source[1] if source else None)
    return out


def test_continuous_aggregate_sql_gives_the_rolled_bars(
    rolled: MarketDefs, query: Callable[..., list[Any]], mode: str
) -> None:
    selects = _cagg_selects()
    assert list(selects) == list(TIMEFRAMES)
    assert [(s or "1m", t) for t, (_, s) in selects.items()] == levels(TIMEFRAMES)
    ctes = []
    for tf, (body, source) in selects.items():
        body = body.replace("WHERE timeframe = '1m'", "WHERE timeframe = '1m' AND exchange = $1")
        if source is not None:
            body = body.replace(f"FROM market.candles_{source}", f"FROM level_{source}")
        ctes.append(f"level_{tf} AS ({body})")
    for tf in TIMEFRAMES:
        cagg = query(
            f"WITH {', '.join(ctes)} SELECT {COLUMNS} FROM level_{tf} "
            "WHERE symbol = $2 ORDER BY ts",
            rolled.settings.exchange,
            "ETH/USDT",
        )
        stored = query(
            f"SELECT {COLUMNS} FROM {bars_relation(tf, mode)} WHERE exchange = $1 AND "
            "symbol = $2 ORDER BY ts",
            rolled.settings.exchange,
            "ETH/USDT",
        )
        assert len(stored) > 0 and [tuple(r) for r in cagg] == [tuple(r) for r in stored], tf


def test_this_server_runs_the_path_of_its_edition(db_url: str, mode: str) -> None:
    async def body() -> str:
        async with connection(db_url) as conn:
            return await server_edition(conn)

    assert mode == (CONTINUOUS if run_sync(body()) == "timescale" else INCREMENTAL)


# --- incremental behaviour, through the Dagster-free functions ------------------------------


async def _load(
    conn: Any, emulator: Emulator, exchange: str, days: list[str], symbol: str = "BTC/USDT"
) -> None:
    resource = ExchangeResource(rest_url=emulator.rest_url)
    async with resource.open() as client:
        await backfill(
            conn,
            client,
            exchange=exchange,
            days_by_symbol={symbol: [datetime.fromisoformat(d).date() for d in days]},
        )


def _counts(result: Any) -> dict[str, tuple[int, int, int]]:
    return {lv.timeframe: (lv.buckets, lv.inserted, lv.updated) for lv in result.levels}


def test_only_touched_buckets_are_recomputed(db_url: str, synthetic_emulator: Emulator) -> None:
    exchange = f"i{uuid.uuid4().hex[:10]}"

    async def body() -> None:
        async with connection(db_url) as conn:
            await _load(conn, synthetic_emulator, exchange, [DAY1])
            first = await rollup_incremental(conn, exchange, "BTC/USDT")
            assert _counts(first)["5m"] == (288, 288, 0)
            idle = await rollup_incremental(conn, exchange, "BTC/USDT")
            assert all(c == (0, 0, 0) for c in _counts(idle).values())

            # correct one minute: exactly its bucket at every level is recomputed and changed
            minute = datetime.fromisoformat(f"{DAY1}T13:07:00+00:00")
            row = await conn.fetchrow(
                "SELECT * FROM market.candles WHERE exchange = $1 AND timeframe = '1m' AND ts = $2",
                exchange,
                minute,
            )
            assert row is not None
            fixed = pl.DataFrame(
                [
                    {
                        k: row[k]
                        for k in (
                            "exchange",
                            "symbol",
                            "timeframe",
                            "ts",
                            "open",
                            "low",
                            "close",
                            "source",
                        )
                    }
                    | {"high": row["high"] * 1.5, "volume": row["volume"] + 1}
                ]
            )
            write = await bulk_write(
                conn,
                "market.candles",
                fixed,
                on_conflict="update",
                update_columns=["high", "volume"],
            )
            assert write.updated == 1
            again = await rollup_incremental(conn, exchange, "BTC/USDT")
            assert _counts(again) == {tf: (1, 0, 1) for tf in TIMEFRAMES}
            high = await conn.fetchval(
                "SELECT high FROM market.candles WHERE exchange = $1 AND timeframe = '1d'", exchange
            )
            assert high == row["high"] * 1.5

    run_sync(body())


def test_a_bar_is_written_only_once_its_interval_is_over(
    db_url: str, synthetic_emulator: Emulator
) -> None:
    exchange = f"f{uuid.uuid4().hex[:10]}"
    midday = datetime.fromisoformat(f"{DAY2}T12:02:00+00:00")

    async def body() -> None:
        async with connection(db_url) as conn:
            await _load(conn, synthetic_emulator, exchange, [DAY2])
            # the clock says 12:02: the 12:00 5m bar, the 12:00 1h bar, the day are not over
            early = await rollup_incremental(conn, exchange, "BTC/USDT", now=midday)
            pending = {lv.timeframe: lv.pending_from for lv in early.levels}
            assert pending["5m"] == midday.replace(minute=0)
            assert pending["1d"] == midday.replace(hour=0, minute=0)
            assert _counts(early)["5m"] == (144, 144, 0) and _counts(early)["1d"] == (0, 0, 0)
            last = await conn.fetchval(
                "SELECT max(ts) FROM market.candles WHERE exchange = $1 AND timeframe = '5m'",
                exchange,
            )
            assert last == midday.replace(minute=0) - timedelta(minutes=5)
            # the next day: no minute arrived since, yet the open buckets are finished
            later = await rollup_incremental(
                conn, exchange, "BTC/USDT", now=midday + timedelta(days=1)
            )
            assert _counts(later)["5m"][1] == 144 and _counts(later)["1d"] == (1, 1, 0)
            assert all(lv.pending_from is None for lv in later.levels)

    run_sync(body())


def test_rows_committed_after_a_run_by_an_older_transaction_are_not_missed(
    db_url: str, synthetic_emulator: Emulator
) -> None:
    exchange = f"w{uuid.uuid4().hex[:10]}"
    minute = datetime.fromisoformat(f"{DAY3}T00:00:00+00:00")

    async def body() -> None:
        async with connection(db_url) as conn, connection(db_url) as writer:
            await _load(conn, synthetic_emulator, exchange, [DAY2])
            source = await conn.fetchrow(
                "SELECT * FROM market.candles WHERE exchange = $1 AND "
                "timeframe = '1m' ORDER BY ts DESC LIMIT 1",
                exchange,
            )
            assert source is not None
            late = pl.DataFrame(
                [
                    {
                        k: source[k]
                        for k in (
                            "exchange",
                            "symbol",
                            "timeframe",
                            "open",
                            "high",
                            "low",
                            "close",
                            "volume",
                            "source",
                        )
                    }
                    | {"ts": minute}
                ]
            )
            transaction = writer.transaction()
            await transaction.start()
            await writer.execute("SELECT 1")  # the writer's transaction (and now()) begins
            await bulk_write(writer, "market.candles", late)
            first = await rollup_incremental(
                conn, exchange, "BTC/USDT", now=minute + timedelta(days=2)
            )
            assert _counts(first)["1d"] == (1, 1, 0)  # DAY2 only: the late row is invisible
            await transaction.commit()
            second = await rollup_incremental(
                conn, exchange, "BTC/USDT", now=minute + timedelta(days=2)
            )
            assert _counts(second)["1d"] == (1, 1, 0)  # DAY3 from the late minute
            assert _counts(second)["5m"] == (1, 1, 0)

    run_sync(body())


def test_plain_postgresql_sql_rolls_up_to_the_same_bars(
    rolled: MarketDefs, db_url: str, mode: str
) -> None:
    copy = f"p{uuid.uuid4().hex[:10]}"

    async def body() -> list[tuple[str, list[Any], list[Any]]]:
        async with connection(db_url) as conn:
            await conn.execute(
                "INSERT INTO market.candles (exchange, symbol, timeframe, ts, open, high, low, "
                "close, volume, source) SELECT $2, symbol, timeframe, ts, open, high, low, "
                "close, volume, source FROM market.candles WHERE exchange = $1 AND "
                "timeframe = '1m' AND symbol = 'BTC/USDT'",
                rolled.settings.exchange,
                copy,
            )
            await rollup_incremental(conn, copy, "BTC/USDT", edition="postgresql")
            out = []
            for tf in TIMEFRAMES:
                # the fallback's own output table against bars as this edition serves them
                sql = (
                    f"SELECT {COLUMNS} FROM market.candles WHERE exchange = $1 AND "
                    "symbol = 'BTC/USDT' AND timeframe = $2 ORDER BY ts"
                )
                served = (
                    f"SELECT {COLUMNS} FROM {bars_relation(tf, mode)} WHERE exchange = $1 "
                    "AND symbol = 'BTC/USDT' ORDER BY ts"
                )
                out.append(
                    (
                        tf,
                        list(map(tuple, await conn.fetch(sql, copy, tf))),
                        list(map(tuple, await conn.fetch(served, rolled.settings.exchange))),
                    )
                )
            return out

    for tf, plain, timescale in run_sync(body()):
        assert plain == timescale, tf


# --- real data -------------------------------------------------------------------------------


def test_real_xrp_eth_minutes_roll_up_to_the_recorded_5m_file(
    testdata: Path,
    db_url: str,
    make_defs: Callable[..., MarketDefs],
    exchange_name: str,
    query: Callable[..., list[Any]],
    mode: str,
) -> None:
    config = EmulatorConfig(replay_dir=testdata, synthetic=None, birdeye=None)
    with emulator_in_thread(config) as emulator:
        md = make_defs(exchange_name, emulator, symbols=("XRP/ETH",), start_date="2019-10-01")
        result = md.materialize(
            ["candles_1m"], first=key("2019-10-11", "XRP/ETH"), last=key("2019-10-13", "XRP/ETH")
        )
        assert result.success
        md.materialize(["candles_5m"])

    minutes = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-1m.feather")
    five = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-5m.feather")
    stored_1m = _stored(query, exchange_name, "XRP/ETH", "1m", mode)
    assert len(stored_1m) == minutes.height == 2469
    expected = [[int(r[0].timestamp() * 1000), *r[1:]] for r in five.rows()]
    assert _stored(query, exchange_name, "XRP/ETH", "5m", mode) == expected
    # quiet minutes of the real market were recorded as empty answers, not as gaps never asked
    empties = query(
        "SELECT count(*) AS n FROM market.empty_intervals WHERE exchange = $1", exchange_name
    )
    assert empties[0]["n"] == 3 * 1440 - 2469


def test_rollup_asset_is_a_no_op_when_nothing_changed(rolled: MarketDefs) -> None:
    result = rolled.materialize(["candles_5m"])
    metas = [m.metadata for m in result.asset_materializations_for_node("candle_rollups")]
    assert [m["rows_inserted"].value for m in metas] == [0] * len(TIMEFRAMES)
    assert [m["buckets_recomputed"].value for m in metas] == [0] * len(TIMEFRAMES)
    assert isinstance(metas[0]["per_symbol"], dg.MarkdownMetadataValue)
