"""The quality checks in real Dagster runs: a blocking candle failure stops the features from
materialising (and the run says why); once the exchange serves the day, the same run passes.

The real assets throughout: ``candles_1m`` fetching from the exchange emulator with stock ccxt,
``market_parquet`` and ``features_1m`` of the features domain writing the Parquet lake.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from ats_pipelines.defs.features.definitions import build_features_defs
from ats_pipelines.defs.market_data.definitions import build_market_data_defs
from ats_pipelines.defs.quality.definitions import build_quality_defs
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.kline_faults import install_kline_faults
from ats_pipelines.emulator.server import EmulatorConfig
from ats_pipelines.emulator.testing import emulator_in_thread
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.features import LakeResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings

DAY = "2024-04-23"  # over on the synthetic market's clock (it starts 2024-05-01 12:00 UTC)
PARTITION = f"{DAY}|BTC/USDT"
DOWNSTREAM = {"market_parquet", "features_1m"}


def _pick(defs: dg.Definitions, names: set[str]) -> list[Any]:
    return [
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and {k.to_user_string() for k in a.keys} & names
    ]


def _check(defs: dg.Definitions, asset: str, name: str) -> dg.AssetChecksDefinition:
    for check in defs.asset_checks or []:
        if any(k.asset_key.to_user_string() == asset and k.name == name for k in check.check_keys):  # type: ignore[union-attr]
            return check  # type: ignore[return-value]
    raise KeyError(f"{asset}:{name}")


def materialized(result: dg.ExecuteInJobResult) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None
    }


def test_blocking_candle_failure_stops_features(
    db_url: str, tmp_path: Path, exchange_name: str
) -> None:
    lake = tmp_path / "lake"
    with emulator_in_thread(EmulatorConfig(start_ms=FIXED_START_MS, birdeye=None)) as emulator:
        settings = MarketDataSettings(
            exchange=exchange_name,
            symbols=("BTC/USDT",),
            start_date="2024-04-01",
            exchange_url=emulator.rest_url,
        )
        market, features = build_market_data_defs(settings), build_features_defs(settings, lake)
        quality = build_quality_defs(settings)
        resources = {
            "timescale": TimescaleResource(database_url=db_url),
            "exchange": ExchangeResource(
                exchange_id="binance",
                rest_url=emulator.rest_url,
                backoff_base_s=0.01,
                max_attempts=3,
            ),
            "lake": LakeResource(root=str(lake)),
            "quality": QualityResource(reports_dir=str(tmp_path / "reports")),
        }
        selection = [
            *_pick(market, {"candles_1m"}),
            *_pick(features, DOWNSTREAM),
            _check(quality, "candles_1m", "candles_suite"),
            _check(quality, "features_1m", "features_suite"),
        ]
        # the exchange leaves three hours of the day out of its answers: 12.5 % missing
        start = datetime.fromisoformat(DAY).replace(hour=6, tzinfo=UTC)
        faults = install_kline_faults(emulator, "BTCUSDT")
        faults.withhold(start + timedelta(minutes=m) for m in range(180))

        with dg.DagsterInstance.ephemeral() as instance:
            blocked = dg.materialize(
                selection,
                resources=resources,
                partition_key=PARTITION,
                raise_on_error=False,
                instance=instance,
            )
            assert not blocked.success
            done = materialized(blocked)
            assert done == {"candles_1m"}  # fetched and stored, then stopped by the check
            (evaluation,) = blocked.get_asset_check_evaluations()  # features' never ran
            assert (evaluation.check_name, evaluation.passed, evaluation.blocking) == (
                "candles_suite",
                False,
                True,
            )
            meta = {k: v.value for k, v in evaluation.metadata.items()}
            assert meta["failed_rules"] == ["ohlcv.coverage"]
            assert meta["coverage"] == 1260 / 1440
            assert "2024-04-23 06:00:00" in str(meta["gaps"]) and "180" in str(meta["gaps"])
            assert str(meta["report"]).endswith("reports/index.html")
            assert "ohlcv.coverage" in (evaluation.description or "")
            failures = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
            assert len(failures) == 1 and "candles_1m_candles_suite" in str(failures[0].step_key)
            why = failures[0].step_failure_data.error  # type: ignore[union-attr]
            assert why is not None and "blocking asset check failed" in why.message
            assert "candles_suite" in why.message
            logged = " ".join(e.user_message for e in instance.all_logs(blocked.run_id))
            assert (
                "Dependencies for step market_parquet failed: "
                "['candles_1m_candles_suite']. Not executing."
            ) in logged
            assert not (lake / "features").exists()

            faults.heal()  # the exchange answers for the whole day again
            passed = dg.materialize(
                selection, resources=resources, partition_key=PARTITION, instance=instance
            )
            done = materialized(passed)
            assert done == {"candles_1m", *DOWNSTREAM}
            checks = {e.check_name: e for e in passed.get_asset_check_evaluations()}
            assert checks["candles_suite"].passed
            assert checks["candles_suite"].metadata["coverage"].value == 1.0
            feats = checks["features_suite"]  # the features of the healed day pass theirs
            assert feats.passed, feats.description
            assert feats.metadata["rows_checked"].value == 1440
            assert len(list((lake / "features" / "features_1m").rglob("*.parquet"))) == 1


def test_unpartitioned_checks_run_as_a_job_and_record_history(
    make_database: object, tmp_path: Path, testdata: Path, exchange_name: str
) -> None:
    """Rollup suite, migrated history vs REST (the emulator replaying the recorded klines) and
    stream freshness, run by a checks-only job like the quality schedules run them."""
    from tests.quality.conftest import freqtrade_candles, migrated_database, run_sync
    from tests.quality.test_checkset import store

    url = migrated_database(make_database, "ats_quality_jobs")
    one = freqtrade_candles(testdata, "XRP_ETH-1m.feather", "XRP/ETH", "1m")
    five = freqtrade_candles(testdata, "XRP_ETH-5m.feather", "XRP/ETH", "5m")
    last_day = one.filter(pl.col("ts") >= datetime(2019, 10, 12, 11, 20, tzinfo=UTC))
    run_sync(
        store(
            url,
            exchange_name,
            pl.concat([last_day, five]).drop("exchange"),
            empty=None,
            source="legacy_cache",
        )
    )
    settings = MarketDataSettings(
        exchange=exchange_name, symbols=("XRP/ETH",), start_date="2019-10-01"
    )
    wanted = {
        ("candles_5m", "candles_suite"),
        ("candles_1m", "history_matches_rest"),
        ("stream_bars", "bars_fresh"),
    }
    checks = [
        c
        for c in build_quality_defs(settings).asset_checks or []
        if any((k.asset_key.to_user_string(), k.name) in wanted for k in c.check_keys)
    ]  # type: ignore[union-attr]
    config = EmulatorConfig(replay_dir=testdata, synthetic=None, birdeye=None)
    with emulator_in_thread(config) as emulator:
        defs = dg.Definitions(
            asset_checks=checks,  # type: ignore[arg-type]
            jobs=[dg.define_asset_job("checks", selection=dg.AssetSelection.checks(*checks))],
            resources={
                "timescale": TimescaleResource(database_url=url),
                "exchange": ExchangeResource(exchange_id="binance", rest_url=emulator.rest_url),
                "quality": QualityResource(
                    reports_dir=str(tmp_path / "reports"), rollup_window_days=2
                ),
            },
        )
        result = defs.resolve_job_def("checks").execute_in_process(raise_on_error=False)
    verdicts = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    assert set(verdicts) == wanted
    rollup = verdicts[("candles_5m", "candles_suite")]
    window = (
        datetime(2019, 10, 11, 11, 20, tzinfo=UTC),
        datetime(2019, 10, 13, 11, 20, tzinfo=UTC),
    )
    in_window = five.filter(pl.col("ts").is_between(*window, closed="left")).height
    assert rollup.passed and rollup.metadata["rows_checked"].value == in_window  # 2 days
    history = verdicts[("candles_1m", "history_matches_rest")]
    assert history.passed and history.metadata["compared"].value == last_day.height
    fresh = verdicts[("stream_bars", "bars_fresh")]
    assert not fresh.passed and fresh.description == "no streaming shard has sent a heartbeat"

    async def recorded() -> list[tuple[str, str, bool]]:
        from ats_pipelines.db.connect import connection

        async with connection(url) as conn:
            rows = await conn.fetch(
                "SELECT asset, check_name, passed, run_id "
                "FROM ops.quality_check_runs ORDER BY asset, check_name"
            )
        assert {r["run_id"] for r in rows} == {result.run_id}
        return [(r["asset"], r["check_name"], r["passed"]) for r in rows]

    assert run_sync(recorded()) == [
        ("candles_1m", "history_matches_rest", True),
        ("candles_5m", "candles_suite", True),
        ("stream_bars", "bars_fresh", False),
    ]
