"""The coordinator: confluence, single, conflict and the window as pure rules; finality from
the analyzer watermarks, exactly-once decisions and the watermark on the real database."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ats_pipelines.signals.analyzer import AnalyzerTarget, insert_signals
from ats_pipelines.signals.config import CoordinatorRules
from ats_pipelines.signals.coordinator import (
    CONFLICT,
    CONFLUENCE,
    SINGLE,
    CoordinatorRunResult,
    SignalRef,
    backlog,
    decide,
    final_up_to,
    replay_decisions,
    run_coordinator,
)
from ats_pipelines.signals.trend import DOWNTREND_START, UPTREND_START, TrendSignal

H = timedelta(hours=1)
M15 = timedelta(minutes=15)
D0 = datetime(2024, 3, 1, tzinfo=UTC)
RULES = CoordinatorRules(coordinator_id="c", timeframes=("15m", "1h"), window=4 * H)


def sig(
    tf: str,
    bar: datetime,
    kind: str = UPTREND_START,
    symbol: str = "BTC/USDT",
    price: float = 100.0,
) -> SignalRef:
    return SignalRef("x", symbol, tf, bar, kind, price)


def test_a_lone_signal_is_a_single_decision_with_its_timeframe_weight() -> None:
    d = decide([sig("1h", D0)], D0 + H, RULES)
    assert (d.decision, d.direction, d.confidence) == (SINGLE, "long", 0.6)
    assert d.decided_at == D0 + H and d.details["votes"]["1h"]["ts"] == D0.isoformat()


def test_same_direction_on_two_timeframes_is_confluence_with_higher_confidence() -> None:
    signals = [sig("1h", D0), sig("15m", D0 + 2 * H)]  # known at 01:00 and 02:15
    d = decide(signals, D0 + 2 * H + M15, RULES)
    assert (d.decision, d.direction) == (CONFLUENCE, "long")
    assert d.confidence == pytest.approx(1 - 0.4 * 0.5) and d.confidence > 0.6
    assert [s.timeframe for s in d.sources] == ["15m", "1h"]


def test_opposite_directions_cancel() -> None:
    signals = [sig("1h", D0, DOWNTREND_START), sig("15m", D0 + H)]
    d = decide(signals, D0 + H + M15, RULES)
    assert (d.decision, d.direction, d.confidence) == (CONFLICT, "flat", 0.0)
    assert d.details["strength"] == {"long": 0.5, "short": 0.6}


def test_each_timeframe_votes_with_its_latest_signal_in_the_window() -> None:
    signals = [sig("15m", D0, DOWNTREND_START), sig("15m", D0 + H), sig("1h", D0 - 4 * H)]
    # the 15m short was superseded by the 15m long; the 1h long (known 21:00 the day before)
    # is older than the 4h window at 01:15 (from 21:15) and does not vote
    d = decide(signals, D0 + H + M15, RULES)
    assert (d.decision, d.direction) == (SINGLE, "long")
    # the window is open at its start: a 1h bar of 19:00, known at 20:00, exactly 4h before
    # the decision at 00:00, does not count; the next one (known at 21:00) does
    edge = [sig("1h", D0 - 5 * H), sig("15m", D0 - M15)]
    assert decide(edge, D0, RULES).decision == SINGLE
    inside = [sig("1h", D0 - 4 * H), sig("15m", D0 - M15)]
    assert decide(inside, D0, RULES).decision == CONFLUENCE


def test_signals_after_the_decision_or_of_other_timeframes_do_not_vote() -> None:
    signals = [sig("15m", D0), sig("1h", D0, DOWNTREND_START), sig("5m", D0)]
    d = decide(signals, D0 + M15, RULES)  # the 1h short is known only at 01:00
    assert (d.decision, d.direction) == (SINGLE, "long")
    with pytest.raises(ValueError, match="no signal becomes known at"):
        decide(signals, D0 + 5 * timedelta(minutes=1), RULES)


def test_replay_decides_at_every_moment_a_signal_becomes_known() -> None:
    signals = [
        sig("1h", D0),
        sig("15m", D0 + 45 * timedelta(minutes=1)),
        sig("15m", D0, symbol="ETH/USDT", kind=DOWNTREND_START),
    ]
    got = [(d.symbol, d.decided_at - D0, d.decision) for d in replay_decisions(signals, RULES)]
    # 15m and 1h signals both known at 01:00 for BTC: one decision, confluence
    assert got == [("BTC/USDT", H, CONFLUENCE), ("ETH/USDT", M15, SINGLE)]


@pytest.mark.parametrize(
    ("marks", "final"),
    [
        ({"15m": D0 + 2 * H, "1h": D0 + H}, True),  # 1h bar 01:00-02:00 processed: final at 02:15
        ({"15m": D0 + 2 * H, "1h": D0}, False),  # the 1h bar that closed at 02:00 is not processed
        ({"15m": D0 + H + 45 * timedelta(minutes=1), "1h": D0 + H}, False),  # nor the 15m 02:00
        ({"15m": D0 + 2 * H}, False),  # 1h never analysed
    ],
)
def test_a_moment_is_final_once_every_timeframe_processed_the_bars_closed_by_then(
    marks: dict, final: bool
) -> None:
    assert final_up_to(marks, D0 + 2 * H + M15, ("15m", "1h")) is final


# --- on the database ----------------------------------------------------------------------


class Crash(RuntimeError):
    pass


@pytest.fixture
def ids() -> tuple[str, str, CoordinatorRules]:
    tag = uuid.uuid4().hex[:8]
    return (
        f"trend_{tag}",
        f"s{tag}",
        CoordinatorRules(coordinator_id=f"coord_{tag}", timeframes=("15m", "1h"), window=4 * H),
    )


async def add_signal(
    conn: asyncpg.Connection,
    analyzer: str,
    exchange: str,
    symbol: str,
    tf: str,
    bar: datetime,
    kind: str = UPTREND_START,
) -> None:
    target = AnalyzerTarget(analyzer, exchange, symbol, tf)
    async with conn.transaction():
        await insert_signals(conn, target, [TrendSignal(bar, kind, 100.0, {"n": 1})])


async def set_watermark(
    conn: asyncpg.Connection, analyzer: str, exchange: str, symbol: str, tf: str, ts: datetime
) -> None:
    await conn.execute(
        "INSERT INTO signals.analyzer_watermarks (analyzer_id, exchange, symbol, timeframe, "
        "last_processed_ts) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (analyzer_id, exchange, "
        "symbol, timeframe) DO UPDATE SET last_processed_ts = EXCLUDED.last_processed_ts",
        analyzer,
        exchange,
        symbol,
        tf,
        ts,
    )


async def decisions(conn: asyncpg.Connection, rules: CoordinatorRules) -> list[tuple]:
    rows = await conn.fetch(
        "SELECT symbol, decided_at, decision, direction, confidence, cardinality("
        "source_signal_ids) AS n FROM signals.coordinated_signals WHERE coordinator_id = $1 "
        "ORDER BY decided_at, symbol",
        rules.coordinator_id,
    )
    return [
        (
            r["symbol"],
            r["decided_at"] - D0,
            r["decision"],
            r["direction"],
            round(r["confidence"], 6),
            r["n"],
        )
        for r in rows
    ]


async def test_decisions_wait_for_every_timeframe_to_be_final(
    conn: asyncpg.Connection,
    ids: tuple[str, str, CoordinatorRules],
    caplog: pytest.LogCaptureFixture,
) -> None:
    analyzer, exchange, rules = ids
    await add_signal(conn, analyzer, exchange, "A", "15m", D0 + H)  # known at 01:15
    await set_watermark(conn, analyzer, exchange, "A", "15m", D0 + H)
    await set_watermark(conn, analyzer, exchange, "A", "1h", D0 - H)  # 1h final up to 00:00
    state = await backlog(conn, analyzer, rules)
    assert (state.decidable, state.waiting) == (0, 1)
    result = await run_coordinator(conn, analyzer, rules)
    assert state.newest_id is not None
    assert result.decisions == [] and result.waiting == 1 and result.watermark_to < state.newest_id
    assert await decisions(conn, rules) == []

    await set_watermark(conn, analyzer, exchange, "A", "1h", D0)  # the 1h bar 00:00-01:00 is in
    assert (await backlog(conn, analyzer, rules)).decidable == 1
    with caplog.at_level(logging.INFO, logger="ats_pipelines.signals.coordinator"):
        result = await run_coordinator(conn, analyzer, rules)
    assert await decisions(conn, rules) == [("A", H + M15, SINGLE, "long", 0.5, 1)]
    assert result.watermark_to == state.newest_id
    assert any(
        "event=coordinated_signal" in r.message
        and "symbol=A" in r.message
        and "decision=single" in r.message
        for r in caplog.records
    )

    await add_signal(conn, analyzer, exchange, "A", "1h", D0 + H)  # known at 02:00
    await set_watermark(conn, analyzer, exchange, "A", "15m", D0 + 2 * H)
    await set_watermark(conn, analyzer, exchange, "A", "1h", D0 + H)
    await run_coordinator(conn, analyzer, rules)
    await run_coordinator(conn, analyzer, rules)  # nothing new: nothing written twice
    assert await decisions(conn, rules) == [
        ("A", H + M15, SINGLE, "long", 0.5, 1),
        ("A", 2 * H, CONFLUENCE, "long", 0.8, 2),
    ]
    latest = await conn.fetch(
        "SELECT symbol, decision FROM signals.latest_coordinated_signals WHERE coordinator_id = $1",
        rules.coordinator_id,
    )
    assert [(r["symbol"], r["decision"]) for r in latest] == [("A", CONFLUENCE)]


async def test_a_waiting_signal_holds_the_watermark_but_not_the_others(
    conn: asyncpg.Connection, ids: tuple[str, str, CoordinatorRules]
) -> None:
    analyzer, exchange, rules = ids
    await add_signal(conn, analyzer, exchange, "SLOW", "15m", D0)  # its 1h is never analysed
    await add_signal(conn, analyzer, exchange, "FAST", "1h", D0, DOWNTREND_START)
    await add_signal(conn, analyzer, exchange, "OTHER", "5m", D0)  # not a coordinated timeframe
    await set_watermark(conn, analyzer, exchange, "SLOW", "15m", D0)
    for tf in ("15m", "1h"):
        await set_watermark(conn, analyzer, exchange, "FAST", tf, D0 + H)
    first = await run_coordinator(conn, analyzer, rules)
    again = await run_coordinator(conn, analyzer, rules)
    assert await decisions(conn, rules) == [("FAST", H, SINGLE, "short", 0.6, 1)]
    assert len(first.decisions) == 1 and again.decisions == []
    state = await backlog(conn, analyzer, rules)
    # SLOW (the lowest id) waits: the watermark stays just below it
    assert first.watermark_to == again.watermark_to == state.last_signal_id
    assert state.newest_id is not None and state.last_signal_id < state.newest_id
    assert (state.decidable, state.waiting) == (1, 1)  # FAST again (already decided), SLOW

    await set_watermark(conn, analyzer, exchange, "SLOW", "1h", D0 - H)
    await run_coordinator(conn, analyzer, rules)
    assert [d[:3] for d in await decisions(conn, rules)] == [
        ("SLOW", M15, SINGLE),
        ("FAST", H, SINGLE),
    ]
    state = await backlog(conn, analyzer, rules)
    newest = await conn.fetchval(
        "SELECT max(id) FROM signals.detected_signals WHERE analyzer_id = $1", analyzer
    )
    assert (state.decidable, state.waiting, state.newest_id) == (0, 0, None)
    assert newest is not None and state.last_signal_id >= newest  # past all, 5m one included


async def test_a_crash_before_commit_leaves_no_decision_and_no_watermark_move(
    conn: asyncpg.Connection, ids: tuple[str, str, CoordinatorRules]
) -> None:
    analyzer, exchange, rules = ids
    await add_signal(conn, analyzer, exchange, "A", "1h", D0)
    for tf in ("15m", "1h"):
        await set_watermark(conn, analyzer, exchange, "A", tf, D0 + H)

    async def crash(result: CoordinatorRunResult) -> None:
        assert len(result.decisions) == 1
        raise Crash("killed before commit")

    before = (await backlog(conn, analyzer, rules)).last_signal_id
    with pytest.raises(Crash):
        await run_coordinator(conn, analyzer, rules, before_commit=crash)
    assert await decisions(conn, rules) == []
    assert (await backlog(conn, analyzer, rules)).last_signal_id == before
    await run_coordinator(conn, analyzer, rules)
    assert await decisions(conn, rules) == [("A", H, SINGLE, "long", 0.6, 1)]
