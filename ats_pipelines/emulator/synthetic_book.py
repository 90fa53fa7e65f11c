"""The synthetic market's order book: one step every 100 ms of exchange time, from a seed.

The book lives on the integer tick grid. Each step re-centres the touch on the price path
(best bid = mid - half spread, best ask = mid + half spread, so it never crosses), churns a few
levels near the touch, and trims levels that drifted beyond ``depth`` ticks from it, so the book
stays smaller than a 1000-level REST snapshot and a client's snapshot always holds all of it.
Every changed level goes into the step's diff with its new size (0 = removed), so applying the
diffs to any earlier snapshot rebuilds this book exactly.

The steps are a pure function of (seed, symbol, start step): the book advances lazily, one step
at a time, whenever anyone looks, and the result does not depend on when they looked.
"""

from __future__ import annotations

import math
import random

from ats_pipelines.emulator.book import L2Book
from ats_pipelines.emulator.model import DepthDiff, DepthSnapshot, units_to_str
from ats_pipelines.emulator.synthetic_history import SymbolHistory

STEP_MS = 100
# Past this many missed steps (nobody looked at the book for five minutes of exchange time) the
# book is re-seeded at the present rather than replayed step by step: catching up hours of
# steps would stall the server, and nobody saw the steps in between anyway.
MAX_CATCHUP_STEPS = 3_000
_FIRST_UPDATE_ID = 5_000_000_000


class SyntheticBook:
    """The true book of one synthetic symbol and the diffs that built it."""

    def __init__(
        self, history: SymbolHistory, seed: int, start_ms: int, depth: int = 150, churn: int = 3
    ) -> None:
        self.history = history
        self.spec = history.symbol.spec
        self.depth = depth
        self.churn = churn
        self.step = start_ms // STEP_MS
        self._rng = random.Random(f"{seed}:{self.spec.symbol_id}:{self.step}")
        self._lot_mu = history.symbol.lot_log_mean + 1.0
        self.book: L2Book[int, int] = L2Book()
        self.book.last_update_id = _FIRST_UPDATE_ID + self.step % 1_000_000
        # Diffs not yet taken by the stream publisher; None while nobody streams this book.
        self.pending: list[DepthDiff] | None = None
        self._seed_book(self.step * STEP_MS)

    def _size(self) -> int:
        return int(math.exp(self._rng.gauss(self._lot_mu, 1.0))) + 1

    def _touch(self, t_ms: int) -> tuple[int, int]:
        mid = self.history.mid_ticks(t_ms)
        half = self.history.symbol.half_spread_ticks
        return mid - half, mid + half

    def _seed_book(self, t_ms: int) -> None:
        bb, ba = self._touch(t_ms)
        for off in range(self.depth + 1):
            if off == 0 or self._rng.random() < 0.6:
                if bb - off > 0:
                    self.book.bids[bb - off] = self._size()
                self.book.asks[ba + off] = self._size()
        self._bb, self._ba = bb, ba

    def advance(self, now_ms: int) -> None:
        """Run every step up to ``now_ms``; diffs go to ``pending`` if someone streams."""
        target = now_ms // STEP_MS
        if target - self.step > MAX_CATCHUP_STEPS:
            self._reseed(target)
        while self.step < target:
            self.step += 1
            diff = self._advance_one(self.step * STEP_MS)
            if diff is not None and self.pending is not None:
                self.pending.append(diff)

    def _reseed(self, step: int) -> None:
        """Replace the whole book at ``step``; one diff removes the old levels, adds the new."""
        old_bids, old_asks = dict(self.book.bids), dict(self.book.asks)
        self.book.bids.clear()
        self.book.asks.clear()
        self.step = step
        self._seed_book(step * STEP_MS)
        pd, qd = self.spec.price_decimals, self.spec.qty_decimals

        def changes(old: dict[int, int], new: dict[int, int]) -> list[tuple[str, str]]:
            return [
                (units_to_str(p, pd), units_to_str(new.get(p, 0), qd))
                for p in sorted(old.keys() | new.keys())
                if old.get(p, 0) != new.get(p, 0)
            ]

        b, a = changes(old_bids, self.book.bids), changes(old_asks, self.book.asks)
        first = self.book.last_update_id + 1
        self.book.last_update_id += max(len(b) + len(a), 1)
        if self.pending is not None:
            self.pending.append(
                DepthDiff(
                    self.spec.symbol_id, step * STEP_MS, first, self.book.last_update_id, b, a
                )
            )

    def _advance_one(self, t_ms: int) -> DepthDiff | None:
        bids, asks, rng = self.book.bids, self.book.asks, self._rng
        old_b: dict[int, int] = {}
        old_a: dict[int, int] = {}

        def put(side: dict[int, int], old: dict[int, int], price: int, size: int | None) -> None:
            if price not in old:
                old[price] = side.get(price, 0)
            if size is None:
                side.pop(price, None)
            else:
                side[price] = size

        bb, ba = self._touch(t_ms)
        # Uncross: the book held bids in [old bb - depth, old bb] and asks in
        # [old ba, old ba + depth]; nothing may now bid above bb or offer below ba.
        for p in range(bb + 1, self._bb + 1):
            if p in bids:
                put(bids, old_b, p, None)
        for p in range(self._ba, ba):
            if p in asks:
                put(asks, old_a, p, None)
        if bb > 0 and bb not in bids:
            put(bids, old_b, bb, self._size())
        if ba not in asks:
            put(asks, old_a, ba, self._size())
        for side, old, sign, top in ((bids, old_b, -1, bb), (asks, old_a, 1, ba)):
            for _ in range(rng.randint(1, self.churn)):
                off = rng.randint(0, self.depth)
                price = top + sign * off
                if price <= 0:
                    continue
                delete = off > 0 and rng.random() < 0.3
                put(side, old, price, None if delete else self._size())
        # Trim what the touch left more than ``depth`` ticks behind.
        for p in range(self._bb - self.depth, bb - self.depth):
            if p in bids:
                put(bids, old_b, p, None)
        for p in range(ba + self.depth + 1, self._ba + self.depth + 1):
            if p in asks:
                put(asks, old_a, p, None)
        self._bb, self._ba = bb, ba
        pd = self.spec.price_decimals
        qd = self.spec.qty_decimals
        b = [
            (units_to_str(p, pd), units_to_str(bids.get(p, 0), qd))
            for p, v in old_b.items()
            if bids.get(p, 0) != v
        ]
        a = [
            (units_to_str(p, pd), units_to_str(asks.get(p, 0), qd))
            for p, v in old_a.items()
            if asks.get(p, 0) != v
        ]
        if not b and not a:
            return None
        first = self.book.last_update_id + 1
        self.book.last_update_id += len(b) + len(a)
        return DepthDiff(self.spec.symbol_id, t_ms, first, self.book.last_update_id, b, a)

    def snapshot(self, limit: int) -> DepthSnapshot:
        pd, qd = self.spec.price_decimals, self.spec.qty_decimals
        return DepthSnapshot(
            self.book.last_update_id,
            [(units_to_str(p, pd), units_to_str(q, qd)) for p, q in self.book.levels("bid", limit)],
            [(units_to_str(p, pd), units_to_str(q, qd)) for p, q in self.book.levels("ask", limit)],
        )
