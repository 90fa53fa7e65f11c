"""candles_1m through real Dagster materialisations: idempotent partitions and overlapping ranged
backfills on the real server, candles equal to the exchange's, rejected rows quarantined."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from ats_pipelines.emulator.kline_faults import install_kline_faults
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.testing import ccxt_binance
from tests.warehouse.conftest import DAY1, DAY2, DAY3, MarketDefs, key, run_sync

MINUTES = 1440


def _meta(result: dg.ExecuteInJobResult, asset: str = "candles_1m") -> dict[str, Any]:
    mat = result.asset_materializations_for_node(asset)[0]
    return {k: v.value for k, v in mat.metadata.items()}


def _per_partition(result: dg.ExecuteInJobResult) -> dict[str, dict[str, Any]]:
    """Each partition's materialisation metadata, as stored for the UI."""
    return {
        str(mat.partition): {k: v.value for k, v in mat.metadata.items()}
        for mat in result.asset_materializations_for_node("candles_1m")
    }


def _per_key(query: Callable[..., list[Any]], exchange: str) -> list[Any]:
    return query(
        "SELECT symbol, ts::date AS day, count(*) AS n, count(DISTINCT ts) AS keys "
        "FROM market.candles WHERE exchange = $1 AND timeframe = '1m' "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        exchange,
    )


async def _exchange_klines(emulator: Emulator, symbol: str, day: str) -> list[list[Any]]:
    start = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    exchange = ccxt_binance(emulator)
    try:
        rows: list[list[Any]] = []
        for since in (start, start + 1000 * 60_000):
            rows += await exchange.fetch_ohlcv(
                symbol, "1m", since=since, limit=1000, params={"endTime": start + 86_400_000 - 1}
            )
        return [r for r in rows if r[0] < start + 86_400_000]
    finally:
        await exchange.close()


def test_partition_twice_and_overlapping_backfill_leave_one_row_per_key(
    make_defs: Callable[..., MarketDefs],
    synthetic_emulator: Emulator,
    exchange_name: str,
    query: Callable[..., list[Any]],
) -> None:
    md = make_defs(exchange_name, synthetic_emulator)

    first = _meta(md.materialize(["candles_1m"], partition=key(DAY2)))
    assert (first["rows_inserted"], first["rows_already_present"]) == (MINUTES, 0)
    assert first["first_ts"].startswith(DAY2) and first["last_ts"].startswith(f"{DAY2}T23:59")
    assert first["missing_minutes"] == 0 and first["partitions_in_run"] == 1

    again = _meta(md.materialize(["candles_1m"], partition=key(DAY2)))
    assert (again["rows_inserted"], again["rows_updated"], again["rows_already_present"]) == (
        0,
        0,
        MINUTES,
    )

    # a ranged backfill (one run) over DAY1..DAY3 overlapping the stored DAY2
    ranged = _per_partition(md.materialize(["candles_1m"], first=key(DAY1), last=key(DAY3)))
    assert sorted(ranged) == [key(DAY1), key(DAY2), key(DAY3)]
    for day, inserted in ((DAY1, MINUTES), (DAY2, 0), (DAY3, MINUTES)):
        meta = ranged[key(day)]
        assert meta["partitions_in_run"] == 3 and meta["rest_ranges"] == 1  # one range, 3 days
        assert (meta["rows_inserted"], meta["rows_already_present"]) == (
            inserted,
            MINUTES - inserted,
        )

    counts = _per_key(query, exchange_name)
    assert [(r["symbol"], str(r["day"]), r["n"], r["keys"]) for r in counts] == [
        ("BTC/USDT", day, MINUTES, MINUTES) for day in (DAY1, DAY2, DAY3)
    ]
    logged = query(
        "SELECT range_start::date AS day, rows_returned FROM market.fetch_log "
        "WHERE exchange = $1 ORDER BY 1",
        exchange_name,
    )
    assert {(str(r["day"]), r["rows_returned"]) for r in logged} == {
        (d, MINUTES) for d in (DAY1, DAY2, DAY3)
    }


def test_a_ranged_run_gives_each_partition_its_own_metadata(
    make_defs: Callable[..., MarketDefs],
    synthetic_emulator: Emulator,
    exchange_name: str,
) -> None:
    """One run over 2 days x ETH/USDT (the UI's ranged backfill): each partition's
    materialisation carries its own rows and time range, not the run's."""
    md = make_defs(exchange_name, synthetic_emulator)
    md.materialize(["candles_1m"], partition=key(DAY1, "ETH/USDT"))  # DAY1 is stored already
    run = md.materialize(["candles_1m"], first=key(DAY1, "ETH/USDT"), last=key(DAY2, "ETH/USDT"))
    metas = _per_partition(run)
    assert sorted(metas) == [key(DAY1, "ETH/USDT"), key(DAY2, "ETH/USDT")]
    day1, day2 = metas[key(DAY1, "ETH/USDT")], metas[key(DAY2, "ETH/USDT")]
    assert (day1["rows_fetched"], day1["rows_inserted"], day1["rows_already_present"]) == (
        MINUTES,
        0,
        MINUTES,
    )
    assert (day2["rows_fetched"], day2["rows_inserted"], day2["rows_already_present"]) == (
        MINUTES,
        MINUTES,
        0,
    )
    for day, meta in ((DAY1, day1), (DAY2, day2)):
        assert meta["first_ts"].startswith(f"{day}T00:00"), meta["first_ts"]
        assert meta["last_ts"].startswith(f"{day}T23:59"), meta["last_ts"]
        assert meta["missing_minutes"] == 0 and meta["partitions_in_run"] == 2
        assert day in meta["coverage"] and ("2024" not in meta["coverage"].replace(day, ""))


def test_stored_candles_are_the_exchanges(
    make_defs: Callable[..., MarketDefs],
    synthetic_emulator: Emulator,
    exchange_name: str,
    query: Callable[..., list[Any]],
) -> None:
    md = make_defs(exchange_name, synthetic_emulator)
    md.materialize(["candles_1m"], partition=key(DAY1, "ETH/USDT"))
    stored = query(
        "SELECT ts, open, high, low, close, volume, source, batch_id FROM "
        "market.candles WHERE exchange = $1 AND timeframe = '1m' ORDER BY ts",
        exchange_name,
    )
    expected = run_sync(_exchange_klines(synthetic_emulator, "ETH/USDT", DAY1))
    assert [
        [int(r["ts"].timestamp() * 1000), r["open"], r["high"], r["low"], r["close"], r["volume"]]
        for r in stored
    ] == expected
    assert {r["source"] for r in stored} == {"rest"}
    assert len({r["batch_id"] for r in stored}) == 1


def test_rest_rows_breaking_a_rule_are_quarantined_and_the_rest_written(
    make_defs: Callable[..., MarketDefs],
    fresh_emulator: Emulator,
    exchange_name: str,
    query: Callable[..., list[Any]],
) -> None:
    faults = install_kline_faults(fresh_emulator, "BTCUSDT")
    bad_high = datetime.fromisoformat(f"{DAY1}T10:00:00+00:00")
    bad_volume = datetime.fromisoformat(f"{DAY1}T10:07:00+00:00")
    faults.corrupt_minute(bad_high, high="1.00000000")  # below open/close: high_bounds
    faults.corrupt_minute(bad_volume, volume="-5.00000000")
    md = make_defs(exchange_name, fresh_emulator)

    meta = _meta(md.materialize(["candles_1m"], partition=key(DAY1)))
    assert meta["rows_rejected"] == 2 and meta["rows_quarantined"] >= 2
    assert meta["rows_inserted"] == MINUTES - 2
    # a rejected minute is missing data, not an empty minute
    assert meta["missing_minutes"] == 2
    assert meta["missing_by_reason"] == {"asked_absent": 2}

    rows = query(
        "SELECT rule, source, ts, location FROM ops.quarantine WHERE exchange = $1 "
        "ORDER BY ts, rule",
        exchange_name,
    )
    assert [(r["rule"], r["source"], r["ts"]) for r in rows] == [
        ("ohlcv.high_bounds", "rest", bad_high),
        ("ohlcv.high_low", "rest", bad_high),
        ("ohlcv.volume", "rest", bad_volume),
    ]
    assert all(exchange_name in r["location"] for r in rows)
    stored = query(
        "SELECT count(*) AS n FROM market.candles WHERE exchange = $1 AND ts = ANY($2)",
        exchange_name,
        [bad_high, bad_volume],
    )
    assert stored[0]["n"] == 0

    # re-running quarantines nothing twice and writes nothing twice
    again = _meta(md.materialize(["candles_1m"], partition=key(DAY1)))
    assert (again["rows_inserted"], again["rows_quarantined"]) == (0, 0)
