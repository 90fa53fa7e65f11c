"""The exchange client (what the resource hands out) against the emulator: retries under
injected faults, paginated candles, and websocket watches that survive gaps and drops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ats_pipelines.emulator.faults import AUTH_FAILURE, DISCONNECT, FaultConfig, RestFault
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.emulator.synthetic import SyntheticConfig
from ats_pipelines.emulator.testing import levels, wait_until
from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.exchange.parsing import trade_rows
from ats_pipelines.exchange.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.05, factor=2.0, max_delay_s=1.0, jitter=0.5)
STREAM_POLICY = RetryPolicy(max_attempts=10, base_delay_s=0.01, max_delay_s=0.1)
SEED = 42
SYNTH = SyntheticConfig(seed=4, symbol_count=4)


class Sleeps(list[float]):
    """Records every backoff instead of waiting it out (the schedule is what is tested)."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., ExchangeClient]]:
    made: list[ExchangeClient] = []

    def make(emu: Emulator, sleeps: Sleeps | None = None, **kwargs: Any) -> ExchangeClient:
        client = ExchangeClient(
            build_exchange("binance", rest_url=emu.rest_url),
            policy=POLICY,
            stream_policy=STREAM_POLICY,
            rng=random.Random(SEED),
            sleep=sleeps if sleeps is not None else Sleeps(),
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def synthetic(make_emulator: Any, speed: float = 20.0, **kwargs: Any) -> Emulator:
    return await make_emulator(
        speed=speed, start_ms=FIXED_START_MS, synthetic=SYNTH, birdeye=None, **kwargs
    )


def schedule(
    n: int,
    retry_after: float | None = None,
    policy: RetryPolicy = POLICY,
    first_retry_each_time: bool = False,
) -> list[float]:
    """The delays the client must have slept: retries 0..n-1 of one failure, or ``n``
    separate failures each followed by its first retry (the seeded draws run on)."""
    rng = random.Random(SEED)
    return [policy.delay_s(0 if first_retry_each_time else i, rng, retry_after) for i in range(n)]


async def test_429s_are_retried_honouring_retry_after(make_emulator: Any, make_client: Any) -> None:
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    await client.load_markets()
    emu.faults.fail_next_rest(3, RestFault(retry_after_s=2.0))
    book = await client.fetch_order_book("BTC/USDT", 10)
    assert len(book["bids"]) == 10
    assert sleeps == [2.0, 2.0, 2.0] == schedule(3, retry_after=2.0)
    assert emu.faults.counts["rest_faults"] == 3
    assert emu.rest.paths["/api/v3/depth"] == 4
    assert client.stats["retries"] == 3


async def test_429s_without_retry_after_follow_the_backoff_schedule(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    await client.load_markets()
    emu.faults.fail_next_rest(3, RestFault(retry_after_s=None))
    await client.fetch_trades("ETH/USDT", limit=5)
    assert sleeps == schedule(3)
    assert sleeps[0] < sleeps[1] < sleeps[2]  # exponential within the jitter band


async def test_retries_give_up_after_the_policy(make_emulator: Any, make_client: Any) -> None:
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    await client.load_markets()
    emu.faults.fail_next_rest(10)
    with pytest.raises(RetriesExhausted, match="gave up after 4 attempts"):
        await client.fetch_order_book("BTC/USDT")
    assert emu.rest.paths["/api/v3/depth"] == 4 and len(sleeps) == 3


async def test_permanent_errors_are_not_retried(make_emulator: Any, make_client: Any) -> None:
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    await client.load_markets()
    emu.faults.fail_next_rest(1, AUTH_FAILURE)
    with pytest.raises(PermanentExchangeError, match=r"AuthenticationError.*-2015"):
        await client.fetch_order_book("BTC/USDT")
    assert emu.rest.paths["/api/v3/depth"] == 1
    with pytest.raises(PermanentExchangeError, match="BadSymbol"):
        await client.fetch_order_book("NOPE/USDT")
    assert emu.rest.paths["/api/v3/depth"] == 1 and sleeps == []


async def test_a_dropped_rest_connection_is_retried(make_emulator: Any, make_client: Any) -> None:
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    await client.load_markets()
    emu.faults.fail_next_rest(2, DISCONNECT)  # aiohttp itself retries a reused connection once
    book = await client.fetch_order_book("BTC/USDT", 5)
    assert len(book["asks"]) == 5
    assert len(sleeps) == 1 and client.stats["retries"] == 1


async def test_ohlcv_range_pages_without_gaps_or_the_open_candle(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator, speed=1.0)
    client = make_client(emu, page_limit=50)
    now = emu.clock.pause()
    minute = now - now % 60_000
    start = minute - 180 * 60_000 + 1  # not aligned: the first bar is the next whole minute
    rows = await client.fetch_candles("BTC/USDT", "1m", start, now + 600_000)
    assert [r.ts for r in rows] == list(range(minute - 179 * 60_000, minute, 60_000))
    assert rows[-1].ts + 60_000 <= now  # the open bar (holding `now`) is not there
    assert emu.rest.paths["/api/v3/klines"] == 4  # 179 bars in pages of 50
    truth = emu.synthetic_market.klines("BTCUSDT", "1m", rows[0].ts, rows[-1].ts, 1000, now)
    assert [(r.ts, r.open, r.high, r.low, r.close, r.volume) for r in rows] == [
        (k.open_time, float(k.open), float(k.high), float(k.low), float(k.close), float(k.volume))
        for k in truth
    ]


async def test_replayed_candles_over_five_pages_are_exactly_the_source(
    make_emulator: Any, make_client: Any, testdata: Path
) -> None:
    emu = await make_emulator(replay_dir=testdata, synthetic=None, birdeye=None)
    client = make_client(emu, page_limit=500)
    frame = pl.read_ipc(testdata / "freqtrade/XRP_ETH-1m.feather")
    opens = frame["date"].dt.epoch("ms").to_list()
    rows = await client.fetch_candles(
        "XRP/ETH", "1m", opens[0], opens[-1] + 60_000, source="replay"
    )
    assert emu.rest.paths["/api/v3/klines"] == 5
    assert len(rows) == frame.height == 2469
    assert (rows[0].ts, rows[-1].ts) == (opens[0], opens[-1])
    assert [(r.ts, r.open, r.high, r.low, r.close, r.volume) for r in rows] == list(
        zip(
            opens,
            *(frame[c].to_list() for c in ("open", "high", "low", "close", "volume")),
            strict=True,
        )
    )


async def test_order_book_resyncs_after_a_gap_and_a_drop(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator, speed=100.0)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    symbol, sid = "ETH/USDT", "ETHUSDT"

    async def updates(count: int) -> None:
        # counted as the client sees them (the market's own count runs on while a loaded
        # machine keeps the client away, and a fault injected then lands before its book)
        for _ in range(count):
            book = await client.watch_order_book(symbol)
            assert book["bids"][0][0] < book["asks"][0][0]

    await updates(300)
    emu.faults.skip_next_diff(sid)
    await updates(300)
    assert client.stats["resyncs"] == 1  # the gap is seen on the next diff, watched or not
    dropped = emu.faults.counts["ws_dropped"]
    assert emu.drop_connections() == 1
    await updates(300)
    assert emu.faults.counts["ws_dropped"] == dropped + 1
    # a close seen during a watch is a reconnect with backoff; one seen between watches ccxt
    # answers by dialling anew on the next watch (no error, no sleep)
    reconnects = client.stats["reconnects"]
    assert reconnects in (0, 1) and sleeps == schedule(reconnects, policy=STREAM_POLICY)
    assert client.stats["resyncs"] == 1
    now = emu.clock.pause()
    truth = emu.synthetic_market.depth(sid, 5000, now)
    exchange = client.exchange
    await wait_until(
        lambda: exchange.orderbooks[symbol]["nonce"] == truth.last_update_id,
        "the client's book to reach the emulator's last update id",
    )
    book = exchange.orderbooks[symbol]
    assert book["bids"] == levels(truth.bids) and book["asks"] == levels(truth.asks)


async def collect_trades(
    emu: Emulator,
    client: ExchangeClient,
    symbol: str,
    sid: str,
    count: int,
    between: Callable[[int], None] | None = None,
    contiguous: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Watch until ``count`` trades, pause the market, and take everything it sent."""
    received: list[dict[str, Any]] = []
    while len(received) < count:
        received.extend(await client.watch_trades(symbol))
        if between is not None:
            between(len(received))
    paused = emu.clock.pause()
    assert emu.synthetic is not None
    last = int(emu.synthetic_market.trades_between(sid, paused - 60_000, paused + 1).ids[-1])
    first = min(int(t["id"]) for t in received)

    def done() -> bool:
        ids = {int(t["id"]) for t in received}
        # with reordering the last trade may overtake the one before it: wait for all
        return len(ids) == last - first + 1 if contiguous else max(ids) >= last

    while not done():
        received.extend(await client.watch_trades(symbol))
    return received, last


async def test_watch_trades_gives_each_trade_once_despite_duplicates_and_reordering(
    make_emulator: Any, make_client: Any
) -> None:
    faults = FaultConfig(duplicate_every=3, reorder_every=5)
    emu = await synthetic(make_emulator, speed=200.0, faults=faults)
    client = make_client(emu)
    received, last = await collect_trades(emu, client, "BTC/USDT", "BTCUSDT", 400, contiguous=True)
    ids = [int(t["id"]) for t in received]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == list(range(min(ids), last + 1))
    assert client.stats["duplicate_trades"] > 0 and emu.faults.counts["trades_reordered"] > 0
    assert ids != sorted(ids)  # reordering reached the client; putting order back is the
    # aggregator's job (late-trade tolerant), dropping repeats is the client's


async def test_watch_trades_survives_malformed_frames_and_drops(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator, speed=200.0, faults=FaultConfig(malformed_every=40))
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    dropped: list[int] = []

    def drop_twice(n: int) -> None:
        if n > 150 * (len(dropped) + 1) and len(dropped) < 2:
            dropped.append(emu.drop_connections())

    received, last = await collect_trades(emu, client, "SOL/USDT", "SOLUSDT", 500, drop_twice)
    assert sum(client.exchange.rejected_frames.values()) > 0
    assert set(client.exchange.rejected_frames) <= {"ws.json", "ws.trade_time", "ws.depth_ids"}
    assert client.stats["reconnects"] == 2
    # each drop: one failure, one backoff (the first of the schedule), then streaming again
    assert sleeps == schedule(2, policy=STREAM_POLICY, first_retry_each_time=True)
    ids = sorted(int(t["id"]) for t in received)
    assert ids[-1] == last and len(ids) == len(set(ids))
    rows = trade_rows("binance", received, "stream")  # every delivered trade is clean
    assert {r.symbol for r in rows} == {"SOL/USDT"}


async def test_watch_trades_for_several_symbols_on_one_stream(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator, speed=200.0)
    client = make_client(emu)
    seen: dict[str, set[str]] = {"BTC/USDT": set(), "ETH/USDT": set()}
    while min(len(ids) for ids in seen.values()) < 50:
        for trade in await client.watch_trades_for_symbols(["BTC/USDT", "ETH/USDT"]):
            assert trade["id"] not in seen[trade["symbol"]]
            seen[trade["symbol"]].add(trade["id"])
    assert len(client.exchange.clients) == 1  # one connection carries both symbols
    assert client.exchange.enableRateLimit  # ccxt's own limiter stays on


async def test_trades_range_pages_through_hours_exactly(
    make_emulator: Any, make_client: Any
) -> None:
    emu = await synthetic(make_emulator, speed=1.0)
    client = make_client(emu)
    now = emu.clock.pause()
    start, end = now - 3 * 3_600_000 - 12_345, now - 600_000
    trades = await client.fetch_trades_range("ETH/USDT", start, end, page_limit=500)
    oracle = emu.synthetic_market.trades_between("ETHUSDT", start, end)
    assert len(trades) == len(oracle) > 1500
    assert [int(t["id"]) for t in trades] == oracle.ids.tolist()
    assert emu.rest.paths["/api/v3/aggTrades"] > 3


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("Cannot Send Message: Connection closed before send"),
        ConnectionResetError("Cannot write to closing transport"),
        TimeoutError(),
    ],
    ids=["ccxt-send-on-closed-socket", "aiohttp-closing-transport", "timeout"],
)
async def test_a_builtin_connection_error_in_a_watch_reconnects(
    make_emulator: Any, make_client: Any, error: OSError
) -> None:
    """Issue 14, finding 2: ccxt's websocket client raises Python's built-in ConnectionError
    (``client.send`` on a socket that closed under a subscription); the watch must treat it
    like ccxt's NetworkError — back off, reconnect — instead of ending the caller's loop.
    The closed-socket send is a stand-in (the race cannot be provoked reliably against the
    emulator); the second call is ccxt's real watch."""
    emu = await synthetic(make_emulator)
    sleeps = Sleeps()
    client = make_client(emu, sleeps)
    calls = {"n": 0}

    async def send_on_closed_socket_then_watch() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return await client.exchange.watch_order_book("ETH/USDT")

    book = await client._watch("watch_order_book ETH/USDT", send_on_closed_socket_then_watch)
    assert book["bids"] and calls["n"] == 2
    assert client.stats["reconnects"] == 1 and sleeps == schedule(1, policy=STREAM_POLICY)
