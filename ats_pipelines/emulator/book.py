"""An L2 order book keyed by a sortable price, as both market sources keep their true book.

Keys are whatever orders prices correctly for the source (integer ticks for the synthetic
market, floats for recorded books); values are the wire strings or integer lots. The book knows
nothing about the wire format: ``levels`` hands back ordered (key, value) pairs and the source
formats them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class L2Book(Generic[K, V]):
    """Two price -> size maps; a size of ``None`` in ``apply`` deletes the level."""

    def __init__(self) -> None:
        self.bids: dict[K, V] = {}
        self.asks: dict[K, V] = {}
        self.last_update_id = 0

    def set(self, side: str, price: K, size: V | None) -> None:
        book = self.bids if side == "bid" else self.asks
        if size is None:
            book.pop(price, None)
        else:
            book[price] = size

    def levels(self, side: str, limit: int | None = None) -> list[tuple[K, V]]:
        """Levels of one side, best first (highest bid, lowest ask)."""
        book = self.bids if side == "bid" else self.asks
        keys = sorted(book, reverse=(side == "bid"))  # type: ignore[type-var]
        if limit is not None:
            keys = keys[:limit]
        return [(k, book[k]) for k in keys]

    def best_bid(self) -> K | None:
        return max(self.bids) if self.bids else None  # type: ignore[type-var]

    def best_ask(self) -> K | None:
        return min(self.asks) if self.asks else None  # type: ignore[type-var]
