"""The demo's features step on the test database through real materialisations and Feast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ats_pipelines.config import Settings
from ats_pipelines.defs.features.definitions import build_features_defs
from ats_pipelines.demo import STEPS, DemoContext
from ats_pipelines.orchestration.resources.features import FeastResource, LakeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse.config import load_market_data_settings
from tests.features.conftest import all_timeframes, load_market, run_sync, synthetic_minutes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"),
]


def test_demo_step_prints_historical_and_online_features(
    db_url: str, exchange: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATS_EXCHANGE", exchange)
    monkeypatch.setenv("ATS_SYMBOLS", "BTC/USDT,ETH/USDT")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monkeypatch.setenv("ATS_MARKET_DATA_START", (today - timedelta(days=5)).date().isoformat())
    for seed, symbol in enumerate(("BTC/USDT", "ETH/USDT")):
        minutes = synthetic_minutes(
            exchange, symbol, days=2, seed=seed, start=today - timedelta(days=2)
        )
        run_sync(load_market(db_url, all_timeframes(minutes)))
    lake = tmp_path / "lake"
    defs = dg.Definitions.merge(
        build_features_defs(load_market_data_settings(), lake),
        dg.Definitions(
            resources={
                "timescale": TimescaleResource(database_url=db_url),
                "lake": LakeResource(root=str(lake)),
                "feast": FeastResource(
                    repo_path=str(settings.feast_repo),
                    lake_root=str(lake),
                    registry=str(tmp_path / "feast" / "registry.db"),
                    online_store=str(tmp_path / "feast" / "online.db"),
                ),
            }
        ),
    )
    step = next(s for s in STEPS if s.name == "features")
    assert STEPS.index(step) < STEPS.index(next(s for s in STEPS if s.name == "signals"))
    with dg.DagsterInstance.ephemeral() as instance:
        lines = step.run(DemoContext(settings=settings, defs=defs, instance=instance))
    text = "\n".join(lines)
    assert (
        "feature rows: features_5m 1,152, features_15m 384, features_1h 96, features_4h 24, "
        "features_1m 5,760; labels_1m 5,730"
    ) in text
    assert "feast apply: 14 objects written" in text
    history = lines.index("historical (point in time, signals_v1 columns):")
    online = lines.index("online (latest):")
    assert online - history - 2 == 4  # a header and one row per entity row
    assert "tf1h_rsi_14" in lines[history + 1] and "tf4h_ret_1" in lines[online + 1]
    latest = lines[online + 3]
    assert "ETH/USDT" in latest and "nan" not in latest and "None" not in latest
