"""Every table's natural key and CHECK constraints, on the real server."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest

from ats_pipelines.db.bulk import bulk_write

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def constraint_of(exc: asyncpg.PostgresError) -> str | None:
    """The constraint a server error names (asyncpg's stubs do not declare the attribute)."""
    return exc.as_dict().get("constraint_name")


def candle(**over: Any) -> dict[str, Any]:
    row = {
        "exchange": "schema-test",
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "ts": T0,
        "open": 100.0,
        "high": 101.0,
        "low": 99.0,
        "close": 100.5,
        "volume": 3.0,
        "source": "test",
    }
    row.update(over)
    return row


MARKET_CASES: dict[str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]] = {
    "market.candles": (
        candle(),
        [
            # high < low necessarily also breaks a bounds check; PostgreSQL names the first
            (
                "candles_high_low|candles_high_bounds|candles_low_bounds",
                {"high": 98.0, "low": 99.0, "open": 98.5, "close": 98.5},
            ),
            ("candles_high_bounds", {"high": 100.2}),
            ("candles_low_bounds", {"low": 100.4}),
            ("candles_prices_positive", {"low": -1.0}),
            ("candles_volume_nonnegative", {"volume": -0.1}),
            ("candles_timeframe_format", {"timeframe": "1 minute"}),
            ("candles_taker_buy_within_volume", {"taker_buy_volume": 5.0}),
        ],
    ),
    "market.trades": (
        {
            "exchange": "schema-test",
            "symbol": "BTC/USDT",
            "ts": T0,
            "trade_id": "1",
            "price": 100.0,
            "amount": 0.5,
            "side": "buy",
            "source": "test",
        },
        [
            ("trades_price_positive", {"price": 0.0}),
            ("trades_amount_positive", {"amount": -2.0}),
            ("trades_side", {"side": "long"}),
            ("trades_trade_id_named", {"trade_id": ""}),
        ],
    ),
    "market.order_book_snapshots": (
        {
            "exchange": "schema-test",
            "symbol": "BTC/USDT",
            "ts": T0,
            "bid_prices": [100.0, 99.5],
            "bid_sizes": [1.0, 2.0],
            "ask_prices": [100.5, 101.0],
            "ask_sizes": [1.5, 0.5],
            "mid": 100.25,
            "spread": 0.5,
            "imbalance_1": -0.2,
            "source": "test",
        },
        [
            ("obs_uncrossed", {"bid_prices": [101.0, 99.5]}),
            ("obs_bid_arrays_match", {"bid_sizes": [1.0]}),
            ("obs_imbalance_range", {"imbalance_1": 1.5}),
            ("obs_spread_nonnegative", {"spread": -0.5}),
        ],
    ),
    "market.funding_rates": (
        {
            "exchange": "schema-test",
            "symbol": "XRP/USDT:USDT",
            "ts": T0,
            "rate": 0.0001,
            "source": "test",
        },
        [("funding_rates_rate_sane", {"rate": 2.0})],
    ),
    "market.reference_candles": (
        {
            "exchange": "schema-test",
            "symbol": "XRP/USDT:USDT",
            "timeframe": "8h",
            "price_type": "mark",
            "ts": T0,
            "open": 1.0,
            "high": 1.1,
            "low": 0.9,
            "close": 1.0,
            "source": "test",
        },
        [
            ("reference_candles_price_type", {"price_type": "last"}),
            ("reference_candles_high_low", {"high": 0.8, "low": 0.85}),
        ],
    ),
}


@pytest.mark.parametrize("table", sorted(MARKET_CASES))
async def test_market_table_key_makes_rewrites_idempotent(
    conn: asyncpg.Connection, table: str
) -> None:
    good, _ = MARKET_CASES[table]
    first = await bulk_write(conn, table, [good])
    second = await bulk_write(conn, table, [good])
    count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE exchange = 'schema-test'")
    assert (first.inserted, second.inserted, second.skipped) == (1, 0, 1)
    assert count == 1
    await conn.execute(f"DELETE FROM {table} WHERE exchange = 'schema-test'")


@pytest.mark.parametrize(
    ("table", "constraint", "change"),
    [(t, c, ch) for t, (_, cases) in sorted(MARKET_CASES.items()) for c, ch in cases],
)
async def test_market_row_breaking_a_check_is_refused(
    conn: asyncpg.Connection, table: str, constraint: str, change: dict[str, Any]
) -> None:
    good, _ = MARKET_CASES[table]
    with pytest.raises(asyncpg.CheckViolationError) as info:
        await bulk_write(conn, table, [{**good, **change}])
    assert constraint_of(info.value) in constraint.split("|")


async def test_retrain_queue_constraints_and_coalescing(conn: asyncpg.Connection) -> None:
    scope = "schema-test-scope"
    insert = "INSERT INTO ml.retrain_queue (scope, reason, priority) VALUES ($1, $2, $3)"
    await conn.execute(insert, scope, "weekly", 2)
    with pytest.raises(asyncpg.UniqueViolationError):  # one pending request per scope
        await conn.execute(insert, scope, "drift", 1)
    for bad, constraint in [
        ((scope + "2", "x", 9), "retrain_queue_priority"),
        ((scope + "3", "", 3), "retrain_queue_reason_named"),
    ]:
        with pytest.raises(asyncpg.CheckViolationError) as info:
            await conn.execute(insert, *bad)
        assert constraint_of(info.value) == constraint
    with pytest.raises(asyncpg.CheckViolationError) as info:
        await conn.execute(
            "UPDATE ml.retrain_queue SET status = 'failed', started_at = now(), "
            "completed_at = now() WHERE scope = $1",
            scope,
        )
    assert constraint_of(info.value) == "retrain_queue_failed_has_error"
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE ml.retrain_queue SET status = 'done' WHERE scope = $1", scope)
    await conn.execute("DELETE FROM ml.retrain_queue WHERE scope = $1", scope)


async def _model(conn: asyncpg.Connection, model_id: str, status: str = "challenger") -> None:
    await conn.execute(
        "INSERT INTO ml.models (model_id, scope, status, feature_service, features, "
        "artifact_path) VALUES ($1, 'schema-test', $2, 'signals_v1', $3, '/tmp/m.txt')",
        model_id,
        status,
        ["f1"],
    )


async def test_models_allow_one_champion_per_scope(conn: asyncpg.Connection) -> None:
    await _model(conn, "schema-test-a", "champion")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _model(conn, "schema-test-b", "champion")
    with pytest.raises(asyncpg.CheckViolationError):
        await _model(conn, "schema-test-c", "king")
    await conn.execute("DELETE FROM ml.models WHERE scope = 'schema-test'")


async def test_signals_one_per_bar_and_model_and_ranges(conn: asyncpg.Connection) -> None:
    await _model(conn, "schema-test-sig")
    sql = (
        "INSERT INTO signals.signals (ts, exchange, symbol, tf, model_id, pred, proba, "
        "features) VALUES ($1, 'schema-test', 'BTC/USDT', '1m', 'schema-test-sig', $2, $3, "
        "$4::jsonb) ON CONFLICT ON CONSTRAINT signals_one_per_bar_and_model DO NOTHING"
    )
    assert await conn.execute(sql, T0, "BUY", 0.7, json.dumps({"rsi": 55})) == "INSERT 0 1"
    assert await conn.execute(sql, T0, "BUY", 0.7, json.dumps({"rsi": 55})) == "INSERT 0 0"
    for pred, proba, constraint in [
        ("BUY", 1.2, "signals_proba_range"),
        ("MAYBE", 0.5, "signals_pred"),
    ]:
        with pytest.raises(asyncpg.CheckViolationError) as info:
            await conn.execute(sql, T0 + dt.timedelta(minutes=1), pred, proba, "{}")
        assert constraint_of(info.value) == constraint
    await conn.execute("DELETE FROM signals.signals WHERE exchange = 'schema-test'")
    await conn.execute("DELETE FROM ml.models WHERE model_id = 'schema-test-sig'")


async def test_detected_and_coordinated_signals_keys(conn: asyncpg.Connection) -> None:
    sql = (
        "INSERT INTO signals.detected_signals (analyzer_id, exchange, symbol, timeframe, ts, "
        "signal_type, price) VALUES ('trend', 'schema-test', 'BTC/USDT', '1h', $1, $2, 10) "
        "ON CONFLICT ON CONSTRAINT detected_signals_natural_key DO NOTHING"
    )
    assert await conn.execute(sql, T0, "uptrendStart") == "INSERT 0 1"
    assert await conn.execute(sql, T0, "uptrendStart") == "INSERT 0 0"
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(sql, T0, "sidewaysStart")
    coord = (
        "INSERT INTO signals.coordinated_signals (coordinator_id, exchange, symbol, "
        "decided_at, direction, decision, confidence, source_signal_ids) VALUES "
        "('c', 'schema-test', 'BTC/USDT', $1, $2, 'confluence', $3, $4)"
    )
    await conn.execute(coord, T0, "long", 0.8, [1, 2])
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(coord, T0, "long", 0.8, [1, 2])
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(coord, T0 + dt.timedelta(hours=1), "long", 1.5, [1])
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(coord, T0 + dt.timedelta(hours=2), "long", 0.5, [])
    await conn.execute("DELETE FROM signals.detected_signals WHERE exchange = 'schema-test'")
    await conn.execute("DELETE FROM signals.coordinated_signals WHERE exchange = 'schema-test'")


async def test_watermarks_have_one_row_per_key(conn: asyncpg.Connection) -> None:
    up = (
        "INSERT INTO signals.analyzer_watermarks (analyzer_id, exchange, symbol, timeframe, "
        "last_processed_ts) VALUES ('trend', 'schema-test', 'BTC/USDT', '1h', $1) "
        "ON CONFLICT (analyzer_id, exchange, symbol, timeframe) "
        "DO UPDATE SET last_processed_ts = EXCLUDED.last_processed_ts"
    )
    await conn.execute(up, T0)
    await conn.execute(up, T0 + dt.timedelta(hours=1))
    rows = await conn.fetch(
        "SELECT last_processed_ts FROM signals.analyzer_watermarks WHERE exchange = 'schema-test'"
    )
    assert [r[0] for r in rows] == [T0 + dt.timedelta(hours=1)]
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO signals.coordinator_watermarks VALUES ('c-test', -1)")
    await conn.execute("DELETE FROM signals.analyzer_watermarks WHERE exchange = 'schema-test'")


async def test_quarantine_keeps_each_bad_row_once(conn: asyncpg.Connection) -> None:
    sql = (
        "INSERT INTO ops.quarantine (dataset, source, rule, reason, location, payload, "
        "row_hash) VALUES ('candles', 'schema-test', 'ohlc.high_low', 'high < low', "
        "'f.parquet:7', '{}'::jsonb, 'abc') ON CONFLICT ON CONSTRAINT quarantine_once "
        "DO NOTHING"
    )
    assert await conn.execute(sql) == "INSERT 0 1"
    assert await conn.execute(sql) == "INSERT 0 0"
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO ops.quarantine (dataset, source, rule, reason, payload, row_hash) "
            "VALUES ('candles', 'schema-test', '', 'x', '{}'::jsonb, 'def')"
        )
    await conn.execute("DELETE FROM ops.quarantine WHERE source = 'schema-test'")


async def test_migration_ledger_file_once_and_failed_needs_error(
    conn: asyncpg.Connection,
) -> None:
    sql = (
        "INSERT INTO ops.migration_ledger (file_path, file_size, file_checksum, status, error) "
        "VALUES ('/cache/schema-test.parquet', 10, 'c0ffee', $1, $2)"
    )
    await conn.execute(sql, "pending", None)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(sql, "pending", None)
    with pytest.raises(asyncpg.CheckViolationError) as info:
        await conn.execute(
            "UPDATE ops.migration_ledger SET status = 'failed' "
            "WHERE file_path = '/cache/schema-test.parquet'"
        )
    assert constraint_of(info.value) == "migration_ledger_failed_has_error"
    await conn.execute("DELETE FROM ops.migration_ledger WHERE file_path LIKE '%schema-test%'")
