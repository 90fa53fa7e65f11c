"""The features assets through real Dagster materialisations on the test database: export,
features and labels of a day x symbol partition, then Feast apply and materialise; re-running a
partition rewrites nothing (identical checksums) and an unchanged registry applies nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.config import load_settings
from ats_pipelines.defs.features.definitions import build_features_defs
from ats_pipelines.features import catalog as cat
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake, file_sha256
from ats_pipelines.orchestration.resources.features import FeastResource, LakeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings
from tests.features.conftest import (
    SYMBOL,
    all_timeframes,
    load_market,
    run_sync,
    synthetic_book,
    xrp_eth_minutes,
)

PARTITION = "2019-10-12|XRP/ETH"
PARTITIONED = [
    "market_parquet",
    *(f"features_{tf}" for tf in cat.HIGHER_TIMEFRAMES),
    "features_1m",
    "labels_1m",
]

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"),
]


@pytest.fixture
def setup(db_url: str, testdata: Path, exchange: str, tmp_path: Path) -> dict[str, Any]:
    frames = all_timeframes(xrp_eth_minutes(testdata, exchange))
    run_sync(load_market(db_url, frames, synthetic_book(frames["1m"], every=2)))
    settings = MarketDataSettings(exchange=exchange, symbols=(SYMBOL,), start_date="2019-10-10")
    lake_root = tmp_path / "lake"
    defs = build_features_defs(settings, lake_root)
    resources = {
        "timescale": TimescaleResource(database_url=db_url),
        "lake": LakeResource(root=str(lake_root)),
        "feast": FeastResource(
            repo_path=str(load_settings().feast_repo),
            registry=str(tmp_path / "feast" / "registry.db"),
            online_store=str(tmp_path / "feast" / "online.db"),
            lake_root=str(lake_root),
        ),
    }
    day = frames["1m"].filter(pl.col("ts").dt.date() == date(2019, 10, 12))
    return {
        "defs": defs,
        "resources": resources,
        "lake": Lake(lake_root),
        "exchange": exchange,
        "minutes": day.height,
    }


def _assets(defs: dg.Definitions, names: list[str]) -> list[dg.AssetsDefinition]:
    return [
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and {k.to_user_string() for k in a.keys} & set(names)
    ]


def _materialize(
    setup: dict[str, Any], names: list[str], partition: str | None = None
) -> dg.ExecuteInJobResult:
    result = dg.materialize(
        _assets(setup["defs"], names),
        resources=setup["resources"],
        partition_key=partition,
        selection=names,
    )
    assert result.success
    return result


def _meta(result: dg.ExecuteInJobResult, name: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(name)[0].metadata.items()}


def test_partition_then_feast(setup: dict[str, Any]) -> None:
    first = _materialize(setup, PARTITIONED, PARTITION)
    exported = _meta(first, "market_parquet")
    assert exported["files_written"] == len(cat.EXPORT_TIMEFRAMES) + 1
    minute = _meta(first, "features_1m")
    assert minute["rows"] == setup["minutes"] > 900 and minute["files_written"] == 1
    # the next day is not exported yet: the last minutes have no full horizon
    assert _meta(first, "labels_1m")["rows"] == setup["minutes"] - LabelSpec().horizon
    lake: Lake = setup["lake"]
    files = sorted((lake.root / "features").rglob("*.parquet"))
    assert len(files) == len(cat.FAMILIES)
    sums = {f: file_sha256(f) for f in files}

    again = _materialize(setup, PARTITIONED, PARTITION)
    assert _meta(again, "market_parquet")["files_written"] == 0
    assert all(_meta(again, f"features_{tf}")["files_written"] == 0 for tf in cat.FAMILY_TIMEFRAMES)
    assert {f: file_sha256(f) for f in files} == sums

    feast = _materialize(setup, ["feast_registry", "feast_online_store"])
    applied = _meta(feast, "feast_registry")["applied"]
    assert "FeatureView:features_1m" in applied and "FeatureService:signals_v1" in applied
    assert "features_1m" in _meta(feast, "feast_online_store")["views"]
    reapplied = _materialize(setup, ["feast_registry"])
    assert _meta(reapplied, "feast_registry")["applied"] == []

    store = setup["resources"]["feast"].store()
    online = store.get_online_features(
        features=["features_1m:rsi_14", "features_1m:tf1h_rsi_14"],
        entity_rows=[{"symbol": SYMBOL, "exchange": setup["exchange"]}],
    ).to_dict()
    assert online["rsi_14"][0] is not None and online["tf1h_rsi_14"][0] is not None


def _spec(defs: dg.Definitions, name: str) -> dg.AssetSpec:
    return next(
        spec for spec in _assets(defs, [name])[0].specs if spec.key.to_user_string() == name
    )


def test_registry_code_version_follows_the_definitions(tmp_path: Path) -> None:
    settings = MarketDataSettings(exchange="binance", symbols=(SYMBOL,))
    one = build_features_defs(settings, tmp_path / "a")
    other = build_features_defs(settings, tmp_path / "b")
    assert _spec(one, "feast_registry").code_version != _spec(other, "feast_registry").code_version
    assert (
        _spec(one, "feast_registry").code_version
        == _spec(build_features_defs(settings, tmp_path / "a"), "feast_registry").code_version
    )
    parents = {d.asset_key.to_user_string() for d in _spec(one, "market_parquet").deps}
    assert {"candles_1m", "candles_4h", "order_book_1m_agg"} <= parents


def test_automation_applies_when_missing_and_materialises_after_new_features(
    tmp_path: Path,
) -> None:
    settings = MarketDataSettings(exchange="binance", symbols=(SYMBOL,), start_date="2024-01-01")
    defs = dg.Definitions.merge(
        build_features_defs(settings, tmp_path / "lake"),
        dg.Definitions(
            resources={
                "lake": LakeResource(root=str(tmp_path / "lake")),
                "timescale": TimescaleResource(database_url="postgresql://x@127.0.0.1:1/x"),
                "feast": FeastResource(
                    repo_path=str(tmp_path),
                    registry="r.db",
                    online_store="o.db",
                    lake_root=str(tmp_path / "lake"),
                ),
            }
        ),
    )
    registry, online = dg.AssetKey("feast_registry"), dg.AssetKey("feast_online_store")
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        assert second.get_num_requested(registry) == 1  # never applied: apply
        instance.report_runless_asset_event(dg.AssetMaterialization("feast_registry"))
        third = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=second.cursor
        )
        assert third.get_num_requested(registry) == third.get_num_requested(online) == 0
        instance.report_runless_asset_event(
            dg.AssetMaterialization("features_1m", partition=f"2024-01-02|{SYMBOL}")
        )
        fourth = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=third.cursor
        )
        assert fourth.get_num_requested(online) == 1  # new features landed: materialise
        assert fourth.get_num_requested(registry) == 0
