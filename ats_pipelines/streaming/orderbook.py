"""Order books: metrics on every update, snapshots of the top levels at a fixed interval.

ccxt.pro keeps the local book (REST snapshot + diffs) and refuses to continue across a sequence
gap; the exchange client then resynchronises (counted as a resync). Each update yields the
``lib.book`` metrics (mid, spread, imbalance at 1/5/10 levels, depth within ±5 % of mid) for the
hot cache; every ``snapshot_interval_s`` the top ``levels`` and the metrics become one
``market.order_book_snapshots`` row, validated first (a crossed or malformed book goes to
quarantine instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ats_pipelines.lib.book import BookMetrics, book_metrics
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.streaming.rows import Rejection, snapshot_row


def _pairs(side: Sequence[Sequence[float]]) -> Sequence[Sequence[float]]:
    if side and len(side[0]) != 2:  # some exchanges add an order count
        return [lvl[:2] for lvl in side]
    return side


@dataclass
class BookView:
    """The latest book of one symbol as seen by the service."""

    ts: int
    sequence: int | None
    bids: list[list[float]]
    asks: list[list[float]]
    metrics: BookMetrics


class BookTracker:
    """Latest metrics and snapshot sampling of one symbol's book."""

    def __init__(self, exchange: str, symbol: str, levels: int, validator: DataValidator) -> None:
        self.exchange, self.symbol, self.levels = exchange, symbol, levels
        self.validator = validator
        self.latest: BookView | None = None
        self._sampled_ts: int | None = None
        self.updates = 0

    def update(self, book: Any, fallback_ts: int) -> BookView:
        bids, asks = _pairs(book["bids"]), _pairs(book["asks"])
        ts = book.get("timestamp") or fallback_ts
        nonce = book.get("nonce")
        view = BookView(
            int(ts),
            int(nonce) if nonce is not None else None,
            [list(lvl) for lvl in bids[: self.levels]],
            [list(lvl) for lvl in asks[: self.levels]],
            book_metrics(bids, asks),
        )
        self.latest = view
        self.updates += 1
        return view

    def sample(self) -> tuple[dict[str, Any] | None, Rejection | None]:
        """A snapshot row of the latest book if it changed since the last sample."""
        view = self.latest
        if view is None or view.ts == self._sampled_ts:
            return None, None
        self._sampled_ts = view.ts
        location = f"stream {self.exchange} {self.symbol} book seq={view.sequence}"
        violations = self.validator.check_book(view.bids, view.asks, view.ts, location=location)
        if violations:
            payload = {
                "ts": view.ts,
                "sequence": view.sequence,
                "bids": view.bids,
                "asks": view.asks,
            }
            return None, Rejection(
                violations[0].rule,
                "; ".join(v.reason for v in violations),
                location,
                self.exchange,
                self.symbol,
                view.ts,
                payload,
            )
        return snapshot_row(
            self.exchange, self.symbol, view.ts, view.sequence, view.bids, view.asks, view.metrics
        ), None

    def cache_values(self) -> dict[str, Any] | None:
        view = self.latest
        if view is None:
            return None
        return {"ts": view.ts, "sequence": view.sequence, **view.metrics._asdict()}
