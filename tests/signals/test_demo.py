"""The demo's signals step, on bars of the test database through real materialisations."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from ats_pipelines.defs.signals.definitions import build_signals_defs
from ats_pipelines.demo import STEPS, DemoContext
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from tests.signals.conftest import make_settings, roll_up, run_sync, write_bars

pytestmark = pytest.mark.integration


def test_demo_step_shows_detected_and_coordinated_signals(
    db_url: str, exchange_name: str, settings, eth_btc_5m: pl.DataFrame
) -> None:
    bars = eth_btc_5m.head(1500)
    frames = {"5m": bars, "15m": roll_up(bars, "15m"), "1h": roll_up(bars, "1h")}
    for tf, frame in frames.items():
        run_sync(write_bars(db_url, exchange_name, "ETH/BTC", tf, frame))
    signals = make_settings(exchange_name)
    defs = dg.Definitions.merge(
        build_signals_defs(signals),
        dg.Definitions(resources={"timescale": TimescaleResource(database_url=db_url)}),
    )
    step = next(s for s in STEPS if s.name == "signals")
    assert STEPS[-1] is step  # after every step that stores bars
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = DemoContext(settings=settings, defs=defs, instance=instance)
        lines = step.run(ctx)
        again = step.run(ctx)
    text = "\n".join(lines)
    assert lines[0].startswith(f"analyzed {sum(map(len, frames.values()))} new bars, wrote ")
    assert "  5m: " in text and "uptrendStart" in text and "downtrendStart" in text
    assert "last decision per symbol:" in text and "ETH/BTC" in lines[-2]
    assert again[0].startswith("analyzed 0 new bars, wrote 0 signals")
    assert lines[-1].startswith("replay ") and lines[-1].endswith("equal to the live rows: True")
