"""Trades into the aggregator: the id tracker, validation to quarantine, duplicates, tainted
intervals, and a checkpoint that resumes exactly (and stays small)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ats_pipelines.lib.bars import BarAggregator
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.streaming.config import parse_shard, shard_symbols
from ats_pipelines.streaming.ingest import FAR_PAST, IdTracker, SymbolPipeline
from ats_pipelines.streaming.rows import Precision, bar_values

T0 = 1_714_564_800_000  # a minute boundary
LATEST = T0 + 10 * 86_400_000


def trade(
    i: int, ts: int, price: float = 100.0, amount: float = 0.5, side: str | None = "buy"
) -> dict[str, Any]:
    return {"id": str(i), "timestamp": ts, "price": price, "amount": amount, "side": side}


def market(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ts, out = T0, []
    for i in range(n):
        ts += rng.randint(50, 900)
        out.append(
            trade(
                1000 + i,
                ts,
                round(100 + rng.uniform(-1, 1), 2),
                round(rng.uniform(0.001, 2), 5),
                rng.choice(["buy", "sell"]),
            )
        )
    return out


def pipeline(grace_ms: int = 1_000) -> SymbolPipeline:
    return SymbolPipeline(
        "x", "BTC/USDT", ("1m", "5m"), grace_ms=grace_ms, validator=DataValidator()
    )


def test_tracker_sees_holes_fill_and_overdue_runs() -> None:
    t = IdTracker()
    assert [t.see(i, i, 0.0, 100) for i in (1, 2, 5, 3, 3, 6)] == [True] * 4 + [False, True]
    assert t.missing == {4} and t.floor == 3 and t.hi == 6
    assert [r.to_list()[:2] for r in t.overdue(1.0, 0.5)] == [[3, 4]]
    assert t.overdue(0.2, 0.5) == []  # within the patience
    assert t.see(4, 4, 2.0, 100) and t.floor == 6 and t.overdue(9.0, 0.5) == []
    t.see(500, 500, 3.0, 100)  # a hole longer than max_gap is not tracked id by id
    assert not t.missing and [r.first for r in t.unfillable] == [7]


def test_tracker_round_trips() -> None:
    t = IdTracker()
    for i in (10, 11, 14):
        t.see(i, i * 100, 0.0, 100)
    back = IdTracker.from_dict(json.loads(json.dumps(t.to_dict())))
    assert (back.hi, back.hi_ts, back.missing, back.floor) == (14, 1400, {12, 13}, 11)


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        (trade(1, T0, price=-1.0), "trade.price_positive"),
        (trade(2, T0, amount=float("nan")), "trade.amount_positive"),
        (trade(3, T0, side="up"), "trade.side"),
        ({**trade(4, T0), "id": None}, "trade.id_missing"),
        ({**trade(5, T0), "timestamp": None}, "trade.ts_missing"),
        (trade(6, LATEST + 60_000), "trade.ts_future"),
    ],
)
def test_bad_trades_are_quarantined_with_their_rule(bad: dict[str, Any], rule: str) -> None:
    p = pipeline()
    assert p.ingest([bad, trade(7, T0 + 1)], 0.0, LATEST) == 1
    [rejection] = p.take_rejections()
    assert rejection.rule == rule and "BTC/USDT" in rejection.location
    assert rejection.payload["id"] == bad["id"] and p.counts["invalid"] == 1


def test_repeated_trades_count_once_and_late_ones_are_kept_and_their_bars_healed() -> None:
    p = pipeline(grace_ms=0)
    trades = market(300)
    p.ingest(trades[:200] + trades[150:200] + trades[200:], 0.0, LATEST)
    assert p.counts["applied"] == 300 and p.counts["duplicate"] == 50
    p.take_heal_wanted()
    stored = len(p.trades)
    # ids never seen, but for a bucket already final: the trade is stored (not quarantined,
    # where it was lost to market.trades) and its bar is healed from the exchange's kline
    p.ingest([trade(10_000, T0 + 1), trade(10_001, T0 + 2)], 0.0, LATEST)
    assert p.counts["late"] == 2 and p.take_rejections() == []
    assert len(p.trades) == stored + 2 and p.trades.ids[-2:] == ["10000", "10001"]
    assert p.take_heal_wanted() == [(T0 + 1, T0 + 2)]


def test_a_fresh_start_taints_its_first_buckets_and_asks_for_healing() -> None:
    p = pipeline(grace_ms=0)
    trades = market(1_500)  # about twelve minutes
    p.ingest(trades, 0.0, LATEST)
    bars = p.agg.drain()
    first_ts = trades[0]["timestamp"]
    kept = p.writable(bars)
    dropped = {(b.timeframe, b.ts) for b in bars} - {(b.timeframe, b.ts) for b in kept}
    assert dropped == {("1m", first_ts - first_ts % 60_000), ("5m", first_ts - first_ts % 300_000)}
    assert p.take_heal_wanted() == [(first_ts, first_ts)] and p.coverage_from == first_ts
    assert p.tainted == [(FAR_PAST, first_ts)]


def test_checkpoint_resumes_exactly_and_keeps_ids_above_the_floor_only() -> None:
    trades = market(2_000)
    whole = pipeline()
    whole.ingest(trades, 0.0, LATEST)
    expected = whole.agg.flush()

    first = pipeline()
    first.ingest(trades[:1_234], 0.0, LATEST)
    before = first.agg.drain()
    saved = json.loads(json.dumps(first.checkpoint()))
    open_base = [o for o in saved["aggregator"]["open"] if o["timeframe"] == "1m"]
    assert open_base and all(o["seen_ids"] == [] for o in open_base)  # floor covers them
    assert open_base[0]["id_floor"] == trades[1_233]["id"]
    second = pipeline()
    second.restore(saved)
    assert second.pending_reconnect and not second.fresh
    second.ingest(trades[1_200:], 0.0, LATEST)  # a replayed overlap is recognised
    assert second.counts["duplicate"] == 34 and second.counts["late"] == 0
    assert before + second.agg.flush() == expected


def test_stored_sums_are_rounded_to_the_market_precision() -> None:
    precision = Precision.of_market({"precision": {"price": 0.01, "amount": 1e-05}}, 4)
    assert (precision.price, precision.amount) == (2, 5)
    agg = BarAggregator("x", "BTC/USDT", ("1m",), grace_ms=0)
    for i, amount in enumerate([0.1, 0.2]):
        agg.on_trade(T0 + i, 100.01, amount, "buy", str(i))
    bar = agg.flush()[0]
    values = bar_values(bar, precision)
    # the exact sum of the decimals 0.1 + 0.2 is 0.3; the floats' exact sum rounds elsewhere
    assert bar.volume == 0.30000000000000004 and values["volume"] == 0.3
    assert values["quote_volume"] == float("30.003") and values["taker_buy_volume"] == 0.3
    assert values["vwap"] == min(max(values["quote_volume"] / 0.3, bar.low), bar.high)
    assert Precision.of_market({"precision": {"price": 2, "amount": 3}}, 2) == Precision(2, 3)
    assert Precision.of_market({"precision": {"price": 4, "amount": 4}}, 3) == Precision()


@pytest.mark.parametrize(("text", "want"), [("0/1", (0, 1)), ("1/3", (1, 3))])
def test_shards(text: str, want: tuple[int, int]) -> None:
    assert parse_shard(text) == want
    symbols = ["C/U", "A/U", "B/U", "D/U"]
    parts = [shard_symbols(symbols, i, want[1]) for i in range(want[1])]
    assert sorted(s for part in parts for s in part) == sorted(symbols)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    from ats_pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)
