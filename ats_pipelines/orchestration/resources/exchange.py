"""The ``exchange`` Dagster resource: configuration in, :class:`ExchangeClient` out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg

from ats_pipelines.exchange.client import ExchangeClient, build_exchange
from ats_pipelines.exchange.retry import RetryPolicy


class ExchangeResource(dg.ConfigurableResource):
    """ccxt REST and ccxt.pro websocket access to one exchange, with retries and backoff."""

    exchange_id: str = "binance"
    # where rest_url points, in words, for the UI and run logs (e.g. "the project's exchange
    # emulator at http://127.0.0.1:8765, started by `ats dagster ui`")
    origin: str = ""
    api_key: str | None = None  # dg.EnvVar("ATS_EXCHANGE_API_KEY"); public data needs none
    secret: str | None = None  # dg.EnvVar("ATS_EXCHANGE_SECRET")
    rest_url: str | None = None  # e.g. the emulator's http://127.0.0.1:8765; None: real hosts
    ws_url: str | None = None  # default: rest_url with a ws:// scheme
    spot_only: bool = True
    timeout_ms: int = 10_000
    page_limit: int = 1000
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_factor: float = 2.0
    backoff_max_s: float = 30.0
    jitter: float = 0.5
    stream_max_failures: int = 20

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=self.backoff_base_s,
            factor=self.backoff_factor,
            max_delay_s=self.backoff_max_s,
            jitter=self.jitter,
        )

    def create_client(self) -> ExchangeClient:
        """A new client; the caller closes it (``await client.close()``)."""
        exchange = build_exchange(
            self.exchange_id,
            api_key=self.api_key,
            secret=self.secret,
            rest_url=self.rest_url,
            ws_url=self.ws_url,
            spot_only=self.spot_only,
            timeout_ms=self.timeout_ms,
        )
        policy = self.retry_policy()
        stream_policy = RetryPolicy(
            max_attempts=self.stream_max_failures,
            base_delay_s=self.backoff_base_s,
            factor=self.backoff_factor,
            max_delay_s=self.backoff_max_s,
            jitter=self.jitter,
        )
        return ExchangeClient(
            exchange, policy=policy, stream_policy=stream_policy, page_limit=self.page_limit
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ExchangeClient]:
        """``async with exchange.open() as client: ...`` — closed on exit."""
        client = self.create_client()
        try:
            yield client
        finally:
            await client.close()
