"""What one streaming process does: exchange, symbols (its shard of them), timeframes, where
rows go, and the knobs of latency versus safety.

Defaults come from the environment through :func:`load_stream_config` (nothing is read at
import): ``ATS_EXCHANGE``, ``ATS_SYMBOLS``, ``ATS_EXCHANGE_URL`` as for market data (see
``ats_pipelines.universe``), the database and Redis from ``ats_pipelines.config``,
``ATS_EXCHANGE_API_KEY``/``ATS_EXCHANGE_SECRET`` (optional; with a key, trade gaps are refilled
from Binance's ``historicalTrades``, without one from the latest 1000 trades).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ats_pipelines.config import ConfigError, load_settings
from ats_pipelines.lib.timeframes import DEFAULT_TIMEFRAMES, TimeframeError, parse_timeframe
from ats_pipelines.universe import Universe, load_universe

_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; a clear error otherwise."""
    match = _SHARD.match(text.strip())
    if not match:
        raise ConfigError(f"--shard {text!r} is not i/n (e.g. 0/2 for the first of two)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def shard_symbols(symbols: Sequence[str], index: int, count: int) -> tuple[str, ...]:
    """The symbols of shard ``index`` of ``count``: round-robin over the sorted list, so every
    process computes the same split and shards differ by at most one symbol."""
    return tuple(s for i, s in enumerate(sorted(symbols)) if i % count == index)


@dataclass(frozen=True)
class StreamConfig:
    """One streaming process. Times in ms are exchange time unless named ``*_s`` (wall)."""

    database_url: str
    symbols: tuple[str, ...]
    exchange: str = "binance"
    timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES
    store_as: str | None = None  # exchange name of stored rows (default: ``exchange``)
    exchange_url: str | None = None  # REST base replacing the exchange's hosts (the emulator)
    api_key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    redis_url: str | None = None  # None: no hot cache and no bar events
    bar_events: bool = True  # publish an event per committed bar (cache.events) to Redis
    shard_index: int = 0
    shard_count: int = 1
    # bars
    grace_ms: int = 2_000
    tick_s: float = 0.25  # clock tick: closes bars of quiet markets, checks trade gaps
    quiet_s: float = 1.0  # the clock closes bars only after this long without a trade (wall)
    gap_patience_s: float = 0.2  # a missing trade id this old is fetched from REST
    max_backfill_trades: int = 200_000  # a longer gap resets the symbol and heals from klines
    dedup_window_ms: int | None = None  # default: one base bar plus the grace
    # books
    watch_books: bool = True
    book_levels: int = 20  # top N levels stored per snapshot
    snapshot_interval_s: float = 1.0
    # writer
    queue_items: int = 10_000  # per lane, between the loop and the writer
    max_pending_rows: int = 100_000  # database up and slow: producers wait (back-pressure)
    buffer_rows: int = 500_000  # database down: held in memory, the rest spilled to files
    spill_dir: Path = Path(".ats/stream/spill")
    db_retry_base_s: float = 0.2
    db_retry_max_s: float = 5.0
    # healing, state, health
    heal_interval_s: float = 300.0
    heal_lookback_bars: int = 30  # per timeframe, for the periodic pass
    checkpoint_interval_s: float = 10.0
    heartbeat_interval_s: float = 5.0
    hot_cache_interval_s: float = 0.1
    open_bar_interval_s: float = 1.0
    metrics_port: int | None = None  # Prometheus /metrics on 127.0.0.1; None: off, 0: any
    # exchange
    # trades ccxt keeps per symbol between our reads; an overflow is a gap in trade ids, which
    # is fetched from REST. Each kept trade is a few objects the garbage collector scans: 10,000
    # per symbol made its passes the service's longest stalls (see ``runtime``)
    trades_cache: int = 2_000
    ws_compression: bool = False  # permessage-deflate on the websockets (CPU for bandwidth)
    reconnect_base_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_max_failures: int = 20
    clock_sync_s: float = 60.0
    future_tolerance_s: float = 5.0
    duration_s: float | None = None  # stop by itself after this long (demos, tests)
    # supervision: a failed task restarts after restart_base_s * 2**n (capped, jittered); a
    # task silent for stall_s while it should produce (its market trades) is restarted too
    restart_base_s: float = 0.5
    restart_max_s: float = 30.0
    stall_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError(
                "no symbols to stream (ATS_SYMBOLS, --symbols, or this shard got none)"
            )
        for tf in self.timeframes:
            try:
                parse_timeframe(tf)
            except TimeframeError as exc:
                raise ConfigError(f"timeframes: {exc}") from None
        if self.grace_ms < 0:
            raise ConfigError(f"grace_ms={self.grace_ms} must be >= 0")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"shard {self.shard_index}/{self.shard_count}: need 0 <= i < n")
        if self.book_levels < 1:
            raise ConfigError(f"book_levels={self.book_levels} must be >= 1")
        if self.stall_s <= 0 or self.restart_base_s <= 0 or self.restart_max_s <= 0:
            raise ConfigError("stall_s, restart_base_s and restart_max_s must be > 0")
        if self.trades_cache < 100:
            raise ConfigError(f"trades_cache={self.trades_cache} must be >= 100")
        if self.max_pending_rows < 1 or self.buffer_rows < 1 or self.queue_items < 1:
            raise ConfigError("queue_items, max_pending_rows and buffer_rows must be >= 1")

    @property
    def label(self) -> str:
        """The exchange name rows are stored under."""
        return self.store_as or self.exchange

    @property
    def shard(self) -> str:
        """This process's name in ``ops.stream_heartbeats`` and ``ops.stream_state``."""
        return f"{self.label}:{self.shard_index}/{self.shard_count}"

    def replace(self, **changes: Any) -> StreamConfig:
        return dataclasses.replace(self, **changes)


def host_name() -> str:
    return socket.gethostname()


def load_stream_config(
    environ: Mapping[str, str] | None = None,
    *,
    shard: str = "0/1",
    universe: Universe | None = None,
    **overrides: Any,
) -> StreamConfig:
    """The environment's stream config for shard ``"i/n"``; ``overrides`` win (CLI options).

    ``symbols`` in ``overrides`` is the full list before sharding.
    """
    env = os.environ if environ is None else environ
    base = load_settings(env)
    market = universe or load_universe(env)
    index, count = parse_shard(shard)
    symbols = tuple(overrides.pop("symbols", None) or market.symbols)
    values: dict[str, Any] = {
        "database_url": base.database_url,
        "exchange": market.exchange,
        "exchange_url": market.exchange_url,
        "redis_url": base.redis_url,
        "api_key": env.get("ATS_EXCHANGE_API_KEY") or None,
        "secret": env.get("ATS_EXCHANGE_SECRET") or None,
        "spill_dir": base.state_dir / "stream" / "spill",
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StreamConfig(
        symbols=shard_symbols(symbols, index, count), shard_index=index, shard_count=count, **values
    )
