"""The demo's data-quality step: materialises ``quality_report`` through Dagster and prints the
report's path and its summary."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from ats_pipelines.config import Settings
from ats_pipelines.defs.quality.assets import build_quality_report
from ats_pipelines.demo import DemoContext, _quality
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.features import LakeResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import MarketDataSettings
from tests.quality.conftest import migrated_database, run_sync
from tests.quality.test_checkset import store


def test_demo_step_prints_the_report(
    make_database: object,
    settings: Settings,
    tmp_path: Path,
    xrp_candles: pl.DataFrame,
    xrp_empty_minutes: pl.DataFrame,
) -> None:
    url = migrated_database(make_database, "ats_quality_demo")
    run_sync(
        store(
            url, "binance", xrp_candles.drop("exchange"), empty=xrp_empty_minutes.drop("exchange")
        )
    )
    defs = dg.Definitions(
        assets=[build_quality_report(MarketDataSettings())],
        resources={
            "timescale": TimescaleResource(database_url=url),
            "exchange": ExchangeResource(),
            "lake": LakeResource(root=str(tmp_path / "lake")),
            "quality": QualityResource(reports_dir=str(tmp_path / "quality")),
        },
    )
    with dg.DagsterInstance.ephemeral() as instance:
        lines = _quality(DemoContext(settings=settings, defs=defs, instance=instance))
    assert lines[0] == f"report: {tmp_path / 'quality' / 'index.html'}"
    assert lines[1] == f"data docs: {tmp_path / 'quality' / 'data_docs' / 'index.html'}"
    assert lines[2].startswith("window: 2019-10-12T11:20:00+00:00 / 2019-10-13T11:20:00")
    assert lines[3] == "1 of 2 checks passing; failing: stream_bars:bars_fresh"
    assert any("| candles_1m | candles_suite | PASS |" in line for line in lines[4:])
    assert (tmp_path / "quality" / "index.html").is_file()
