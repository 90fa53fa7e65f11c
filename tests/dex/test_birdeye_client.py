"""The Birdeye client against the emulated Birdeye API: normalised DEX trades and pool
liquidity, the daily quota (checked before a request is sent), and the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ats_pipelines.dex.birdeye import BirdeyeClient, BirdeyeError, swap_to_trade
from ats_pipelines.dex.quota import DailyQuota, QuotaExhausted
from ats_pipelines.emulator.birdeye import BONK, POOLS, SOL, BirdeyeConfig
from ats_pipelines.emulator.fixtures import FIXED_START_MS
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.exchange.errors import ExchangeDataError

KEY = "test-key"


@pytest.fixture
async def make_birdeye() -> AsyncIterator[Callable[..., BirdeyeClient]]:
    made: list[BirdeyeClient] = []

    def make(emu: Emulator, **kwargs: Any) -> BirdeyeClient:
        kwargs.setdefault("api_key", KEY)
        client = BirdeyeClient(base_url=emu.birdeye_url, min_interval_s=0.0, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def dex(make_emulator: Any, **birdeye: Any) -> Emulator:
    return await make_emulator(start_ms=FIXED_START_MS, birdeye=BirdeyeConfig(**birdeye))


def served(emu: Emulator) -> int:
    assert emu.birdeye is not None
    return sum(emu.birdeye.requests.values())


async def test_token_trades_are_normalised_with_the_dex_as_exchange(
    make_emulator: Any, make_birdeye: Any
) -> None:
    emu = await dex(make_emulator)
    client = make_birdeye(emu)
    rows, more = await client.token_trades(SOL.address, limit=50)
    assert more and len(rows) == 50
    assert {r.exchange for r in rows} <= {"raydium", "orca"}
    assert {r.symbol for r in rows} <= {"SOL/USDC", "Bonk/SOL"}
    assert all(r.source == "birdeye" and r.side in ("buy", "sell") for r in rows)
    assert all(
        r.amount > 0 and r.cost and abs(r.price * r.amount - r.cost) < 1e-9 * r.cost for r in rows
    )
    assert [r.ts for r in rows] == sorted((r.ts for r in rows), reverse=True)
    assert rows[0].ts <= FIXED_START_MS + 60_000
    sol_usdc = [r for r in rows if r.symbol == "SOL/USDC"]
    assert all(100 < r.price < 200 for r in sol_usdc)  # around the pool's 150 USDC
    assert len({r.trade_id for r in rows}) == 50
    first, _ = await client.token_trades(SOL.address, limit=20)
    page2, _ = await client.token_trades(SOL.address, limit=20, offset=20)
    both, _ = await client.token_trades(SOL.address, limit=40)
    assert first + page2 == both


async def test_repeated_requests_come_from_the_cache(make_emulator: Any, make_birdeye: Any) -> None:
    emu = await dex(make_emulator)
    client = make_birdeye(emu)
    a = await client.pair_trades(POOLS[2].address, limit=5)
    b = await client.pair_trades(POOLS[2].address, limit=5)
    assert a == b and served(emu) == 1 and client.quota.used == 1 and client.cache.hits == 1
    assert {r.symbol for r in a[0]} == {"Bonk/SOL"}


async def test_the_daily_quota_refuses_before_sending(
    make_emulator: Any, make_birdeye: Any
) -> None:
    emu = await dex(make_emulator)
    client = make_birdeye(emu, daily_quota=3)
    for offset in range(3):
        await client.token_trades(BONK.address, limit=5, offset=offset)
    with pytest.raises(QuotaExhausted, match=r"daily quota of 3 requests is used up.*00:00 UTC"):
        await client.token_trades(BONK.address, limit=5, offset=3)
    assert served(emu) == 3
    await client.token_trades(BONK.address, limit=5, offset=0)  # cached: still answered
    assert served(emu) == 3


async def test_a_429_from_birdeye_spends_the_day(make_emulator: Any, make_birdeye: Any) -> None:
    emu = await dex(make_emulator, daily_quota=2)
    client = make_birdeye(emu, daily_quota=100)
    await client.token_price(SOL.address)
    await client.token_price(BONK.address)
    with pytest.raises(QuotaExhausted, match="429"):
        await client.pool_liquidity(POOLS[0].address)
    assert client.quota.remaining == 0
    with pytest.raises(QuotaExhausted):
        await client.pool_liquidity(POOLS[1].address)
    assert served(emu) == 2


async def test_a_wrong_key_is_a_clear_error(make_emulator: Any, make_birdeye: Any) -> None:
    emu = await dex(make_emulator, api_keys=("the-right-key",))
    client = make_birdeye(emu, api_key="a-wrong-key")
    with pytest.raises(BirdeyeError, match="HTTP 401: Unauthorized"):
        await client.token_price(SOL.address)
    with pytest.raises(BirdeyeError, match="needs an API key"):
        BirdeyeClient(api_key="")


async def test_pool_liquidity_and_token_price(make_emulator: Any, make_birdeye: Any) -> None:
    emu = await dex(make_emulator)
    client = make_birdeye(emu)
    row = await client.pool_liquidity(POOLS[0].address)
    assert (row.exchange, row.symbol, row.pool) == ("raydium", "SOL/USDC", POOLS[0].address)
    assert row.liquidity_usd == 12_000_000.0 and 100 < row.price < 200
    assert row.volume_24h_quote and row.volume_24h_quote > 0
    price = await client.token_price(SOL.address)
    assert price["value"] == 150.0
    assert price["liquidity"] == sum(
        p.liquidity_usd for p in POOLS if SOL.address in (p.base.address, p.quote.address)
    )


def test_quota_persists_and_resets_each_utc_day(tmp_path: Path) -> None:
    now = [1_714_564_800.0]  # 2024-05-01T12:00Z
    state = tmp_path / "birdeye-quota.json"
    quota = DailyQuota(2, state, clock=lambda: now[0])
    quota.acquire()
    again = DailyQuota(2, state, clock=lambda: now[0])  # another process, same key
    again.acquire()
    with pytest.raises(QuotaExhausted, match="2024-05-01"):
        again.acquire()
    now[0] += 12 * 3600  # past midnight UTC
    again.acquire()
    assert again.used == 1 and again.remaining == 1


SWAP = {
    "txHash": "abc",
    "blockUnixTime": 1_714_564_800,
    "source": "Raydium CLMM",
    "base": {"symbol": "SOL", "uiChangeAmount": -2.0},
    "quote": {"symbol": "USDC", "uiChangeAmount": 300.0},
}


def test_swaps_map_to_trades_and_bad_swaps_name_the_rule() -> None:
    row = swap_to_trade(SWAP)
    assert (row.exchange, row.symbol, row.side, row.price, row.amount, row.cost, row.ts) == (
        "raydium_clmm",
        "SOL/USDC",
        "sell",
        150.0,
        2.0,
        300.0,
        1_714_564_800_000,
    )
    for change, rule in (
        ({"txHash": ""}, "dex.swap_id"),
        ({"blockUnixTime": None}, "dex.swap_time"),
        ({"base": {"symbol": "SOL", "uiChangeAmount": 0}}, "dex.swap_amount"),
        ({"quote": {"symbol": "USDC", "uiChangeAmount": -1.0}}, "dex.swap_direction"),
        ({"base": "SOL"}, "dex.swap_shape"),
        ({"source": ""}, "dex.swap_source"),
    ):
        with pytest.raises(ExchangeDataError) as info:
            swap_to_trade({**SWAP, **change}, index=7)
        assert info.value.rule == rule and "birdeye swap #7" in str(info.value)
