"""What a market source gives the emulator: the protocol-neutral market behind the Binance API.

A source answers REST questions about any time up to ``now`` and hands the stream publisher
what happened since it last asked (``drain_*``). Times are exchange milliseconds from the
emulator's clock. Symbols are Binance ids (``BTCUSDT``).
"""

from __future__ import annotations

from typing import Protocol

from ats_pipelines.emulator.model import DepthDiff, DepthSnapshot, KlineRow, SymbolSpec, TradeBatch


class UnknownSymbol(KeyError):
    """The source does not list this symbol."""


class MarketSource(Protocol):
    def specs(self) -> list[SymbolSpec]:
        """Every spot market this source serves."""
        ...

    def klines(
        self,
        symbol_id: str,
        interval: str,
        start: int | None,
        end: int | None,
        limit: int,
        now: int,
    ) -> list[KlineRow]:
        """Klines with ``start <= open_time <= end`` (Binance semantics), at most ``limit``;
        with neither bound, the most recent ``limit``. The bar holding ``now`` is partial."""
        ...

    def trades(
        self,
        symbol_id: str,
        now: int,
        limit: int,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> TradeBatch:
        """Trades by id from ``from_id``, or in ``[start, end]``, else the most recent."""
        ...

    def depth(self, symbol_id: str, limit: int, now: int) -> DepthSnapshot:
        """The true book as of ``now``."""
        ...

    def start_stream(self, symbol_id: str, now: int) -> None:
        """A client subscribed to one of the symbol's streams (replays start here)."""
        ...

    def stop_stream(self, symbol_id: str) -> None:
        """Nobody listens to the symbol any more: forget stream cursors and pending diffs."""
        ...

    def drain_trades(self, symbol_id: str, now: int) -> TradeBatch:
        """Trades since the previous drain (the first drain starts at ``now``)."""
        ...

    def drain_depth(self, symbol_id: str, now: int) -> list[DepthDiff]:
        """Book diffs since the previous drain, in update-id order, none skipped."""
        ...

    def drain_klines(self, symbol_id: str, interval: str, now: int) -> list[tuple[KlineRow, bool]]:
        """Kline updates (row, closed?) since the previous drain of this interval."""
        ...
