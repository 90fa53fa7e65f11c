"""``DataValidator``: the clock and time limits, and one entry point per dataset and path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Unpack

import polars as pl

from ats_pipelines.lib.validation import books, candles, trades
from ats_pipelines.lib.validation.common import Limits, ValidationResult, Violation
from ats_pipelines.lib.validation.frames import Where


class DataValidator:
    """Validation rules; ``now`` is the clock (tests pass a fixed one)."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        future_tolerance: timedelta = timedelta(seconds=5),
        earliest: datetime = datetime(2009, 1, 3, tzinfo=UTC),
    ) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self.future_tolerance = future_tolerance
        self.earliest = earliest

    def limits(self) -> Limits:
        """The accepted time range now."""
        latest = self._now() + self.future_tolerance
        return Limits(int(self.earliest.timestamp() * 1000), int(latest.timestamp() * 1000))

    # --- per message (the stream) ----------------------------------------------------------

    def check_trade(
        self,
        ts_ms: int | None,
        price: float | None,
        amount: float | None,
        side: str | None,
        trade_id: str | None,
        *,
        location: str = "message",
    ) -> list[Violation]:
        return trades.check_trade(
            self.limits(), ts_ms, price, amount, side, trade_id, location=location
        )

    def check_candle(
        self,
        ts_ms: int | None,
        timeframe: str | None,
        open_: float | None,
        high: float | None,
        low: float | None,
        close: float | None,
        volume: float | None,
        *,
        location: str = "message",
        require_volume: bool = True,
    ) -> list[Violation]:
        return candles.check_candle(
            self.limits(),
            ts_ms,
            timeframe,
            (open_, high, low, close),
            volume,
            location=location,
            require_volume=require_volume,
        )

    def check_book(
        self,
        bids: Sequence[Sequence[float]],
        asks: Sequence[Sequence[float]],
        ts_ms: int | None = None,
        *,
        location: str = "message",
        require_ts: bool = False,
    ) -> list[Violation]:
        return books.check_book(
            self.limits(), bids, asks, ts_ms, location=location, require_ts=require_ts
        )

    # --- frames: ``where`` names the source (``frames.Where``: exchange, symbol, location,
    # location_col, ts_col); exchange/symbol/timeframe fill in absent columns ------------------

    def candles(
        self,
        frame: pl.DataFrame,
        *,
        timeframe: str | None = None,
        require_volume: bool = True,
        **where: Unpack[Where],
    ) -> ValidationResult:
        """OHLCV rows; ``timeframe``/``exchange``/``symbol`` fill in absent columns."""
        return candles.validate_frame(
            frame, self.limits(), where, timeframe=timeframe, require_volume=require_volume
        )

    def trades(
        self, frame: pl.DataFrame, *, id_col: str | None = None, **where: Unpack[Where]
    ) -> ValidationResult:
        """Trade rows (ccxt ``timestamp``/``id`` or database ``ts``/``trade_id`` names)."""
        return trades.validate_frame(frame, self.limits(), where, id_col=id_col)

    def order_books(self, frame: pl.DataFrame, **where: Unpack[Where]) -> ValidationResult:
        """Snapshots with list columns bid_prices, bid_sizes, ask_prices, ask_sizes."""
        return books.validate_frame(frame, self.limits(), where)
