"""Retries with exponential backoff and jitter around ccxt calls.

Transient: ccxt's ``NetworkError`` family (network failures, ``RequestTimeout``,
``DDoSProtection`` and ``RateLimitExceeded``, ``ExchangeNotAvailable``/``OnMaintenance``,
``InvalidNonce``). Everything else ccxt raises (``BadSymbol``, ``AuthenticationError``,
``BadRequest``, ...) is permanent and fails at once. A ``Retry-After`` from the exchange sets a
floor under the next delay.

The delay before retry ``n`` (0-based) is ``min(max_delay, base * factor**n)``, scaled by a
uniform draw in ``[1 - jitter, 1]`` ("equal jitter" shape: never more than the cap, never
collapsing to zero), then raised to ``Retry-After`` if that is longer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import ccxt

from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ccxt.NetworkError,)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    max_attempts: int = 6  # tries in total, the first included
    base_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    jitter: float = 0.5  # fraction of the delay that is random
    max_retry_after_s: float = 300.0  # a longer Retry-After is treated as this

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number ``retry`` (0 for the first retry), without Retry-After."""
        ceiling = min(self.max_delay_s, self.base_delay_s * self.factor**retry)
        return ceiling * rng.uniform(1.0 - self.jitter, 1.0)

    def delay_s(self, retry: int, rng: random.Random, retry_after_s: float | None) -> float:
        delay = self.backoff_s(retry, rng)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_retry_after_s))
        return delay


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    retry_after: Callable[[BaseException], float | None] = lambda exc: None,
) -> T:
    """Await ``fn()``; retry transient ccxt errors per ``policy``; fail permanent ones at once."""
    for attempt in range(policy.max_attempts):
        try:
            return await fn()
        except ccxt.BaseError as exc:
            if not is_transient(exc):
                raise PermanentExchangeError(
                    f"{what}: {type(exc).__name__}: {exc} (permanent, not retried)"
                ) from exc
            if attempt + 1 >= policy.max_attempts:
                raise RetriesExhausted(
                    f"{what}: gave up after {policy.max_attempts} attempts; last error "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            hint = retry_after(exc)
            delay = policy.delay_s(attempt, rng, hint)
            log.warning(
                "event=exchange_retry what=%r attempt=%s delay_s=%.3f retry_after_s=%s error=%s",
                what,
                attempt + 1,
                delay,
                hint,
                type(exc).__name__,
            )
            await sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
