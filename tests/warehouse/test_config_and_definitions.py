"""Settings from the environment, and the market-data definitions built from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from ats_pipelines.config import ConfigError, load_settings
from ats_pipelines.defs.market_data.definitions import build_market_data_defs
from ats_pipelines.defs.resources import RESOURCES_BY_ENV, build_resources
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.warehouse.config import (
    EMULATOR_URL,
    MarketDataSettings,
    load_market_data_settings,
    parse_ages,
)
from ats_pipelines.warehouse.intervals import Interval, day_runs, minute_runs, split_days

ENV = {"ATS_ENV": "test"}


def test_defaults() -> None:
    s = load_market_data_settings(ENV)
    assert (s.exchange, s.symbols, s.start_date) == (
        "binance",
        ("BTC/USDT", "ETH/USDT"),
        "2024-01-01",
    )
    assert s.exchange_url == EMULATOR_URL
    assert s.retention["market.order_book_snapshots"] == timedelta(days=30)
    assert "market.candles" not in s.retention  # one table holds 1m and 1d bars


def test_environment_overrides() -> None:
    s = load_market_data_settings(
        {
            "ATS_ENV": "prod",
            "ATS_EXCHANGE": "kraken",
            "ATS_SYMBOLS": " SOL/USDT , XRP/USDT:USDT ",
            "ATS_MARKET_DATA_START": "2023-06-01",
            "ATS_RETENTION": "market.trades=90d,market.order_book_snapshots=off",
            "ATS_COMPRESSION": "market.trades=12h",
        }
    )
    assert s.exchange == "kraken" and s.symbols == ("SOL/USDT", "XRP/USDT:USDT")
    assert s.exchange_url is None  # prod talks to the exchange itself
    assert s.retention == {
        "market.trades": timedelta(days=90),
        "market.order_book_1s_agg": timedelta(days=90),
    }
    assert s.compression["market.trades"] == timedelta(hours=12)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ATS_SYMBOLS", "BTCUSDT", "BTCUSDT"),
        ("ATS_SYMBOLS", "BTC/USDT,BTC/USDT", "repeats"),
        ("ATS_SYMBOLS", "BTC/USDT|ETH/USDT", "BTC/USDT|ETH/USDT"),
        ("ATS_EXCHANGE", "Binance US", "ATS_EXCHANGE"),
        ("ATS_MARKET_DATA_START", "01/02/2024", "ATS_MARKET_DATA_START"),
        ("ATS_RETENTION", "market.trades=ninety", "ninety"),
        ("ATS_RETENTION", "market.nope=3d", "market.nope"),
    ],
)
def test_bad_settings_name_the_variable_and_value(variable: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("|", r"\|")):
        load_market_data_settings({**ENV, variable: value})


def test_parse_ages() -> None:
    assert parse_ages("a=2w, b=off", "X") == {"a": timedelta(weeks=2), "b": None}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_minute_and_day_runs() -> None:
    minutes = [_utc("2024-01-01T00:00"), _utc("2024-01-01T00:01"), _utc("2024-01-01T00:05")]
    assert minute_runs(reversed(minutes)) == [
        Interval(_utc("2024-01-01T00:00"), _utc("2024-01-01T00:02")),
        Interval(_utc("2024-01-01T00:05"), _utc("2024-01-01T00:06")),
    ]
    assert day_runs(["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-05"]) == [
        Interval(_utc("2024-01-01"), _utc("2024-01-04")),
        Interval(_utc("2024-01-05"), _utc("2024-01-06")),
    ]
    assert split_days(Interval(_utc("2024-01-01T22:00"), _utc("2024-01-03T01:00"))) == [
        Interval(_utc("2024-01-01T22:00"), _utc("2024-01-02")),
        Interval(_utc("2024-01-02"), _utc("2024-01-03")),
        Interval(_utc("2024-01-03"), _utc("2024-01-03T01:00")),
    ]


def _defs(settings: MarketDataSettings) -> dg.Definitions:
    resources = build_resources(load_settings({"ATS_ENV": "test"}))
    return dg.Definitions.merge(
        build_market_data_defs(settings), dg.Definitions(resources=resources)
    )


def test_definitions_built_from_settings() -> None:
    settings = MarketDataSettings(symbols=("BTC/USDT", "SOL/USDT"), start_date="2024-05-01")
    defs = _defs(settings)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {
        "candles_1m",
        "candles_5m",
        "candles_15m",
        "candles_1h",
        "candles_4h",
        "candles_1d",
        "order_book_1s_agg",
        "order_book_1m_agg",
        "trade_flow_1m",
    }
    graph = defs.resolve_asset_graph()
    candles = graph.get(dg.AssetKey("candles_1m"))
    assert candles.backfill_policy == dg.BackfillPolicy.single_run()
    partitions = candles.partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    assert "2024-05-01|SOL/USDT" in partitions.get_partition_keys()
    assert graph.get(dg.AssetKey("candles_15m")).parent_keys == {dg.AssetKey("candles_5m")}
    assert (
        dg.AssetCheckKey(dg.AssetKey("candles_1m"), "no_missing_minutes") in graph.asset_check_keys
    )
    jobs = {j.name for j in defs.jobs or []}
    assert {
        "candles_1m_job",
        "candles_1m_repair_job",
        "candles_1m_gap_check_job",
        "market_history_job",
        "market_data_retention_job",
    } <= jobs
    assert {s.name for s in defs.schedules or []} == {
        "candles_1m_daily_schedule",
        "market_history_daily_schedule",
        "candles_1m_repair_schedule",
        "market_data_retention_schedule",
    }


def test_repair_schedule_requests_one_ranged_run_per_symbol() -> None:
    defs = _defs(MarketDataSettings(start_date="2024-05-01"))
    schedule = defs.resolve_schedule_def("candles_1m_repair_schedule")
    context = dg.build_schedule_context(scheduled_execution_time=_utc("2024-05-20T01:30"))
    requests = schedule.evaluate_tick(context).run_requests or []
    assert [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
    ] == [
        ("2024-05-13|BTC/USDT", "2024-05-19|BTC/USDT"),
        ("2024-05-13|ETH/USDT", "2024-05-19|ETH/USDT"),
    ]
    early = dg.build_schedule_context(scheduled_execution_time=_utc("2024-05-03T01:30"))
    first = (schedule.evaluate_tick(early).run_requests or [])[0]
    assert first.tags["dagster/asset_partition_range_start"] == "2024-05-01|BTC/USDT"


@pytest.mark.parametrize("env", sorted(RESOURCES_BY_ENV))
def test_every_environment_has_an_exchange_resource(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATS_EXCHANGE_URL", raising=False)
    settings = load_settings({"ATS_ENV": env, "ATS_DATABASE_URL": "postgresql://u@db:5432/ats"})
    exchange = build_resources(settings)["exchange"]
    assert isinstance(exchange, ExchangeResource) and exchange.exchange_id == "binance"
    assert exchange.rest_url == (None if env == "prod" else EMULATOR_URL)
