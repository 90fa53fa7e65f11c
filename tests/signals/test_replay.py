"""Replay equals live: the analyzers and the coordinator run live as bars arrive — timeframes
lagging each other, runs interleaved — and a replay over any window of the stored bars gives
the same rows (natural keys, prices, confidence, details). A bar changed behind the live path's
back shows up as a difference."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import dagster as dg
import polars as pl
import pytest

from ats_pipelines.defs.signals.assets import REPLAYED, build_signal_assets
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.analyzer import AnalyzerTarget, run_analyzer
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.coordinator import CONFLICT, CONFLUENCE, SINGLE, run_coordinator
from ats_pipelines.signals.replay import compare_with_live, replay
from tests.signals.conftest import make_settings, read_freqtrade, roll_up, run_sync, write_bars

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAG = {"5m": timedelta(0), "15m": timedelta(minutes=40), "1h": timedelta(hours=3)}


async def run_live(
    conn: asyncpg.Connection, settings: SignalsSettings, start: datetime, end: datetime, seed: int
) -> int:
    """The clock moves in uneven steps; each timeframe's analyzer sees it late by its lag (a
    rollup behind the minutes) and they run in a random order, the coordinator in between.
    Returns how many coordinator runs found signals waiting for a lagging timeframe."""
    rng = random.Random(seed)
    clock, waited = start, 0
    while clock < end:
        clock += timedelta(minutes=rng.choice([1, 7, 33, 95, 240, 600]))
        runs = [(tf, s) for tf in settings.timeframes for s in settings.symbols]
        rng.shuffle(runs)
        for tf, symbol in runs:
            target = AnalyzerTarget(settings.analyzer_id, settings.exchange, symbol, tf)
            await run_analyzer(conn, target, settings.params(tf), now=clock - LAG[tf])
            if rng.random() < 0.3:
                result = await run_coordinator(conn, settings.analyzer_id, settings.coordinator)
                waited += result.waiting > 0
    await run_coordinator(conn, settings.analyzer_id, settings.coordinator)
    return waited


async def test_replay_equals_live_row_by_row(
    conn: asyncpg.Connection,
    db_url: str,
    exchange_name: str,
    eth_btc_5m: pl.DataFrame,
    testdata: Path,
) -> None:
    eth = eth_btc_5m.head(2500)  # 2018-01-10 04:55 .. 2018-01-18 21:00
    xrp = read_freqtrade(testdata / "freqtrade" / "XRP_ETH-5m.feather")
    # XRP/ETH (2019-10-11 .. 13) moved by whole days to start a day after ETH/BTC: the two
    # symbols then share the live clock (bar alignment is unchanged)
    shift = timedelta(days=(eth["ts"][0].date() - xrp["ts"][0].date()).days + 1)
    series = {"ETH/BTC": eth, "XRP/ETH": xrp.with_columns(pl.col("ts") + shift)}
    for symbol, bars in series.items():
        await write_bars(db_url, exchange_name, symbol, "5m", bars)
        for tf in ("15m", "1h"):
            await write_bars(db_url, exchange_name, symbol, tf, roll_up(bars, tf))
    # a 12h window: on these bars the 15m and 1h analyzers also disagree (conflicts)
    settings = make_settings(exchange_name, tuple(series), window=timedelta(hours=12))
    first = min(b["ts"][0] for b in series.values())
    last = max(b["ts"][-1] for b in series.values())
    end = last + timedelta(days=1)
    assert await run_live(conn, settings, first, end, seed=9) > 0  # finality was needed

    whole = await replay(conn, settings, first, end, now=end)
    assert len(whole.signals) > 100
    assert {d.decision for d in whole.decisions} == {SINGLE, CONFLUENCE, CONFLICT}
    comparison = await compare_with_live(conn, whole)
    assert comparison.matches, comparison.as_dict()
    assert comparison.live_signals == len(whole.signals)
    assert comparison.live_decisions == len(whole.decisions)

    # a window starting and ending mid-bar, mid-day: signals in it, decisions in it, the same
    middle = await replay(
        conn,
        settings,
        first + timedelta(days=2, minutes=7),
        first + timedelta(days=6, hours=3, minutes=20),
        now=end,
    )
    assert 0 < len(middle.signals) < len(whole.signals) and middle.decisions
    assert {s.symbol for s in middle.signals} == {"ETH/BTC", "XRP/ETH"}
    assert (await compare_with_live(conn, middle)).matches

    # a live signal whose bar is later corrected: the replay no longer agrees, and says where
    changed = next(s for s in whole.signals if s.timeframe == "5m" and s.symbol == "ETH/BTC")
    await conn.execute(
        "UPDATE market.candles SET close = CASE WHEN close = low THEN high ELSE low END "
        "WHERE exchange = $1 AND symbol = $2 AND timeframe = '5m' AND ts = $3",
        exchange_name,
        "ETH/BTC",
        changed.ts,
    )
    after = await compare_with_live(conn, await replay(conn, settings, first, end, now=end))
    assert not after.matches
    assert changed.key() in after.only_live


def test_replay_job_stores_the_replay_and_reports_the_comparison(
    db_url: str, exchange_name: str, eth_btc_5m: pl.DataFrame
) -> None:
    bars = eth_btc_5m.head(1200)
    run_sync(write_bars(db_url, exchange_name, "ETH/BTC", "5m", bars))
    for tf in ("15m", "1h"):
        run_sync(write_bars(db_url, exchange_name, "ETH/BTC", tf, roll_up(bars, tf)))
    settings = make_settings(exchange_name)
    resources = {"timescale": TimescaleResource(database_url=db_url)}
    assets = build_signal_assets(settings)
    # the live path through its assets: analyzers, then the coordinator
    assert dg.materialize(assets[:2], resources=resources).success
    start, end = bars["ts"][300], bars["ts"][1000]
    config = {"ops": {REPLAYED: {"config": {"start": start.isoformat(), "end": end.isoformat()}}}}
    result = dg.materialize([assets[2]], resources=resources, run_config=config)
    (event,) = result.asset_materializations_for_node(REPLAYED)
    meta = {k: v.value for k, v in event.metadata.items()}
    assert meta["matches_live"] is True
    signals, decisions = meta["signals"], meta["decisions"]
    assert isinstance(signals, int) and isinstance(decisions, int)
    assert signals == meta["live_signals"] and signals > 0
    assert decisions == meta["live_decisions"] and decisions > 0

    async def stored() -> tuple:
        from ats_pipelines.db.connect import connection

        async with connection(db_url) as c:
            head = await c.fetchrow(
                "SELECT * FROM signals.replays WHERE replay_id = $1", result.run_id
            )
            n = await c.fetchval(
                "SELECT count(*) FROM signals.replay_detected_signals WHERE replay_id = $1",
                result.run_id,
            )
            m = await c.fetchval(
                "SELECT count(*) FROM signals.replay_coordinated_signals WHERE replay_id = $1",
                result.run_id,
            )
            return head, n, m

    head, n, m = run_sync(stored())
    assert head["matches_live"] and head["range_start"] == start and head["range_end"] == end
    assert (n, m) == (meta["signals"], meta["decisions"])

    bad = {"ops": {REPLAYED: {"config": {"start": "2018-01-12", "end": "yesterday"}}}}
    failed = dg.materialize([assets[2]], resources=resources, run_config=bad, raise_on_error=False)
    assert not failed.success
    assert "replay end='yesterday' is not an ISO date" in str(
        failed.get_step_failure_events()[0].step_failure_data.error
    )
