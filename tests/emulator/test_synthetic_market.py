"""The synthetic market against its own oracle: klines are the aggregation of its trades, the
book never crosses and its diffs rebuild it exactly, and everything follows from the seed."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.intervals import DAY_MS, INTERVAL_MS, MINUTE_MS, interval_open
from ats_pipelines.emulator.model import units_to_str
from ats_pipelines.emulator.synthetic import SyntheticConfig, SyntheticMarket, synthetic_symbols
from ats_pipelines.emulator.synthetic_book import MAX_CATCHUP_STEPS, STEP_MS

NOW = FIXED_START_MS + 3 * 3_600_000 + 12_345  # a few hours in, mid-minute


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(SyntheticConfig(seed=3), FIXED_START_MS)


def oracle_klines(
    market: SyntheticMarket, symbol: str, interval: str, start: int, end: int
) -> list[tuple[int, str, str, str, str, str, int]]:
    """Klines computed the slow, obvious way from the market's trades."""
    spec = market.history(symbol).symbol.spec
    t = market.trades_between(symbol, start, end)
    buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ts, price, qty in zip(t.ts.tolist(), t.price.tolist(), t.qty.tolist(), strict=True):
        buckets[interval_open(ts, interval)].append((price, qty))
    out = []
    for open_time in sorted(buckets):
        trades = buckets[open_time]
        prices = [p for p, _ in trades]
        out.append(
            (
                open_time,
                units_to_str(prices[0], spec.price_decimals),
                units_to_str(max(prices), spec.price_decimals),
                units_to_str(min(prices), spec.price_decimals),
                units_to_str(prices[-1], spec.price_decimals),
                units_to_str(sum(q for _, q in trades), spec.qty_decimals),
                len(trades),
            )
        )
    return out


@pytest.mark.parametrize(
    ("interval", "span_ms"), [("1m", 90 * MINUTE_MS), ("15m", 10 * 3_600_000), ("1h", DAY_MS)]
)
def test_klines_are_the_aggregation_of_the_trades(
    market: SyntheticMarket, interval: str, span_ms: int
) -> None:
    start = interval_open(NOW - span_ms, interval)
    end = interval_open(NOW, interval)  # closed bars only
    rows = market.klines("ETHUSDT", interval, start, end - 1, 1000, NOW)
    got = [(r.open_time, r.open, r.high, r.low, r.close, r.volume, r.trades) for r in rows]
    expected = oracle_klines(market, "ETHUSDT", interval, start, end)
    assert len(got) == span_ms // INTERVAL_MS[interval]
    assert got == expected


def test_the_open_kline_holds_only_trades_up_to_now(market: SyntheticMarket) -> None:
    open_time = interval_open(NOW, "1m")
    [row] = market.klines("BTCUSDT", "1m", None, None, 1, NOW)
    assert row.open_time == open_time
    assert (
        row.open_time,
        row.open,
        row.high,
        row.low,
        row.close,
        row.volume,
        row.trades,
    ) == oracle_klines(market, "BTCUSDT", "1m", open_time, NOW + 1)[0]
    later = market.klines("BTCUSDT", "1m", open_time, open_time, 1, open_time + MINUTE_MS - 1)
    assert later[0].trades > row.trades  # the rest of the minute was not leaked before


def test_the_open_kline_exists_before_its_first_trade(market: SyntheticMarket) -> None:
    h = market.history("LTCUSDT")
    t = market.trades_between("LTCUSDT", NOW - DAY_MS, NOW + DAY_MS)
    minute = interval_open(NOW, "1m")
    first = int(t.ts[np.searchsorted(t.ts, minute)])
    assert first > minute  # with seed 3 this minute's first trade comes after its start
    [row] = market.klines("LTCUSDT", "1m", None, None, 1, minute)
    previous = t.price[np.searchsorted(t.ts, minute) - 1]
    expected = units_to_str(int(previous), h.symbol.spec.price_decimals)
    assert (row.open, row.high, row.low, row.close) == (expected,) * 4
    assert (row.volume, row.trades, row.open_time) == ("0.00000000", 0, minute)


def test_binance_kline_window_semantics(market: SyntheticMarket) -> None:
    start = interval_open(NOW, "1h") - 50 * MINUTE_MS
    rows = market.klines("SOLUSDT", "1m", start + 1, None, 5, NOW)  # start inside a bar
    assert rows[0].open_time == start + MINUTE_MS  # open_time >= startTime
    assert len(rows) == 5
    recent = market.klines("SOLUSDT", "1m", None, None, 3, NOW)
    assert [r.open_time for r in recent] == [
        interval_open(NOW, "1m") - i * MINUTE_MS for i in (2, 1, 0)
    ]
    ending = market.klines("SOLUSDT", "1m", None, start, 2, NOW)  # only endTime: the last 2
    assert [r.open_time for r in ending] == [start - MINUTE_MS, start]
    assert market.klines("SOLUSDT", "1m", NOW + MINUTE_MS, None, 5, NOW) == []


def test_history_covers_thirty_days_and_every_minute_trades(market: SyntheticMarket) -> None:
    daily = market.klines("BTCUSDT", "1d", NOW - 30 * DAY_MS, None, 1000, NOW)
    assert len(daily) >= 30
    hour = market.klines("XRPUSDT", "1m", NOW - 30 * DAY_MS, NOW - 30 * DAY_MS + 3_599_999, 60, NOW)
    assert len(hour) == 60 and all(r.trades >= 1 for r in hour)
    assert market.klines("XRPUSDT", "1m", None, NOW - 40 * DAY_MS, 10, NOW) == []


def test_trade_ids_are_consecutive_across_days(market: SyntheticMarket) -> None:
    day = NOW // DAY_MS * DAY_MS
    before = market.trades_between("ADAUSDT", day - DAY_MS, day)
    after = market.trades_between("ADAUSDT", day, day + DAY_MS)
    assert int(after.ids[0]) == int(before.ids[-1]) + 1
    assert (after.ids[1:] - after.ids[:-1] == 1).all()
    assert (after.ts[1:] >= after.ts[:-1]).all()
    assert after.price.min() > 0 and after.qty.min() > 0


def test_trades_of_one_millisecond_sweep_the_book(market: SyntheticMarket) -> None:
    """Consecutive trades with the same timestamp and side are one taker sweeping the book:
    buys at rising, sells at falling prices (ccxt's suite failed fetchTrades on a sell at a
    higher price than the sell before it in the same millisecond)."""
    t = market.trades_between("BTCUSDT", FIXED_START_MS, FIXED_START_MS + 86_400_000)
    same = (t.ts[1:] == t.ts[:-1]) & (t.buyer_maker[1:] == t.buyer_maker[:-1])
    step = np.sign(t.price[1:] - t.price[:-1])
    buy = ~t.buyer_maker[1:]
    assert same.sum() > 5  # the case occurs
    assert not np.any(same & buy & (step < 0))
    assert not np.any(same & ~buy & (step > 0))
    assert np.all(np.diff(t.ids) == 1) and np.all(np.diff(t.ts) >= 0)


def test_same_seed_same_market_other_seed_other_market() -> None:
    a = SyntheticMarket(SyntheticConfig(seed=5), FIXED_START_MS)
    b = SyntheticMarket(SyntheticConfig(seed=5), FIXED_START_MS)
    c = SyntheticMarket(SyntheticConfig(seed=6), FIXED_START_MS)
    window = (NOW - 600_000, NOW)
    ta, tb, tc = (m.trades_between("BTCUSDT", *window) for m in (a, b, c))
    assert ta.ids.tolist() == tb.ids.tolist() and ta.price.tolist() == tb.price.tolist()
    assert ta.price.tolist() != tc.price.tolist()
    assert a.depth("BTCUSDT", 50, NOW) == b.depth("BTCUSDT", 50, NOW)
    # b computes its day from scratch in another order: still the same trades
    assert b.klines("BTCUSDT", "1h", None, None, 3, NOW) == a.klines(
        "BTCUSDT", "1h", None, None, 3, NOW
    )


def test_many_symbols_are_generated() -> None:
    symbols = synthetic_symbols(40)
    assert len({s.spec.symbol_id for s in symbols}) == 40
    assert all(s.spec.price_decimals + s.spec.qty_decimals <= 8 for s in symbols)


def apply(
    book: dict[str, dict[str, str]],
    diff_bids: list[tuple[str, str]],
    diff_asks: list[tuple[str, str]],
) -> None:
    for side, levels in (("bids", diff_bids), ("asks", diff_asks)):
        for price, qty in levels:
            if float(qty) == 0:
                book[side].pop(price, None)
            else:
                book[side][price] = qty


def test_book_diffs_rebuild_the_book_exactly_and_it_never_crosses() -> None:
    market = SyntheticMarket(SyntheticConfig(seed=9), FIXED_START_MS)
    now = FIXED_START_MS + 1_000
    snap = market.depth("ETHUSDT", 5000, now)
    market.drain_depth("ETHUSDT", now)  # start collecting diffs from here
    book = {"bids": dict(snap.bids), "asks": dict(snap.asks)}
    last = snap.last_update_id
    for _ in range(40):
        now += 2_500  # 25 steps at a time
        for diff in market.drain_depth("ETHUSDT", now):
            assert diff.first_id == last + 1 and diff.last_id >= diff.first_id
            last = diff.last_id
            apply(book, diff.bids, diff.asks)
        truth = market.depth("ETHUSDT", 5000, now)
        assert truth.last_update_id == last
        assert book == {"bids": dict(truth.bids), "asks": dict(truth.asks)}
        assert float(truth.bids[0][0]) < float(truth.asks[0][0])
        assert len(truth.bids) < 1000 and len(truth.asks) < 1000


def test_a_long_unobserved_book_is_reseeded_with_one_consistent_diff() -> None:
    market = SyntheticMarket(SyntheticConfig(seed=9), FIXED_START_MS)
    now = FIXED_START_MS
    snap = market.depth("BTCUSDT", 5000, now)
    market.drain_depth("BTCUSDT", now)
    later = now + (MAX_CATCHUP_STEPS + 10) * STEP_MS
    diffs = market.drain_depth("BTCUSDT", later)
    book = {"bids": dict(snap.bids), "asks": dict(snap.asks)}
    for diff in diffs:
        apply(book, diff.bids, diff.asks)
    truth = market.depth("BTCUSDT", 5000, later)
    assert book == {"bids": dict(truth.bids), "asks": dict(truth.asks)}
    assert diffs[0].first_id == snap.last_update_id + 1
