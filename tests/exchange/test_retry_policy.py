"""Retry policy: which errors are retried, how long it waits, and when it gives up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import ccxt
import pytest

from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.exchange.retry import RetryPolicy, call_with_retry, parse_retry_after

POLICY = RetryPolicy(max_attempts=5, base_delay_s=0.5, factor=2.0, max_delay_s=3.0, jitter=0.5)


class Flaky:
    """Raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    rng = random.Random(1)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        for _ in range(200):
            delay = POLICY.backoff_s(retry, rng)
            assert ceiling * 0.5 <= delay <= ceiling


@pytest.mark.parametrize(
    "error",
    [
        ccxt.NetworkError("reset"),
        ccxt.RequestTimeout("slow"),
        ccxt.DDoSProtection("429"),
        ccxt.RateLimitExceeded("-1003"),
        ccxt.ExchangeNotAvailable("down"),
        ccxt.OnMaintenance("m"),
    ],
)
async def test_transient_errors_are_retried_on_schedule(error: BaseException) -> None:
    fn, sleeps = Flaky(error, error, error), Sleeps()
    result = await call_with_retry(fn, what="t", policy=POLICY, rng=random.Random(7), sleep=sleeps)
    assert result == "ok" and fn.calls == 4
    rng = random.Random(7)
    assert sleeps == [POLICY.backoff_s(i, rng) for i in range(3)]


@pytest.mark.parametrize(
    "error",
    [
        ccxt.BadSymbol("binance does not have market symbol X"),
        ccxt.AuthenticationError("-2015 invalid key"),
        ccxt.PermissionDenied("no"),
        ccxt.BadRequest("-1100"),
        ccxt.ExchangeError("-5000 not served"),
    ],
)
async def test_permanent_errors_fail_at_once_with_a_clear_message(error: BaseException) -> None:
    fn, sleeps = Flaky(error), Sleeps()
    with pytest.raises(PermanentExchangeError, match="permanent, not retried") as info:
        await call_with_retry(
            fn, what="binance fetch_x BTC/USDT", policy=POLICY, rng=random.Random(1), sleep=sleeps
        )
    assert fn.calls == 1 and sleeps == []
    assert "binance fetch_x BTC/USDT" in str(info.value) and type(error).__name__ in str(info.value)
    assert info.value.__cause__ is error


async def test_gives_up_after_max_attempts() -> None:
    fn, sleeps = Flaky(*[ccxt.RequestTimeout("slow")] * 10), Sleeps()
    with pytest.raises(RetriesExhausted, match="after 5 attempts"):
        await call_with_retry(fn, what="t", policy=POLICY, rng=random.Random(1), sleep=sleeps)
    assert fn.calls == 5 and len(sleeps) == 4


async def test_retry_after_is_a_floor_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_retry_after_s=10.0)
    hints = iter([2.0, 0.0, 99.0])
    fn, sleeps = Flaky(*[ccxt.DDoSProtection("429")] * 3), Sleeps()
    await call_with_retry(
        fn,
        what="t",
        policy=policy,
        rng=random.Random(3),
        sleep=sleeps,
        retry_after=lambda exc: next(hints),
    )
    rng = random.Random(3)
    backoffs = [policy.backoff_s(i, rng) for i in range(3)]
    assert sleeps == [2.0, backoffs[1], 10.0]


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"Content-Type": "x"}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after({"Retry-After": later}) or 0) <= 30
