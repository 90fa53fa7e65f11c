"""The emulator's exchange clock: wall time, optionally sped up, with injected jumps."""

from __future__ import annotations

import time


class EmulatorClock:
    """Exchange time in ms: ``start_ms + elapsed * speed + jumps``.

    ``jump`` moves the exchange clock by a signed amount (the "exchange time jumps" fault). The
    server's reported time follows it both ways; the market (``market_ms``) treats a backwards
    jump as time standing still until the clock catches up, so nothing is traded twice.
    ``pause`` freezes exchange time (tests use it to compare a client's state with the
    emulator's at one instant); ``resume`` continues from there.
    """

    def __init__(self, start_ms: int | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed {speed} must be > 0")
        self.speed = speed
        self._t0 = time.monotonic()
        self._wall0 = self._t0
        self.start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        self._base_ms = self.start_ms
        self.offset_ms = 0
        self._frozen: int | None = None
        self._market_ms = self.start_ms

    def now_ms(self) -> int:
        if self._frozen is not None:
            return self._frozen
        elapsed = time.monotonic() - self._t0
        return self._base_ms + int(elapsed * 1000 * self.speed) + self.offset_ms

    def market_ms(self) -> int:
        """Time as the market sees it: exchange time, but never going backwards."""
        self._market_ms = max(self._market_ms, self.now_ms())
        return self._market_ms

    def wall_elapsed_s(self) -> float:
        """Seconds of real time since the clock started (fault schedules use these)."""
        return time.monotonic() - self._wall0

    def jump(self, delta_ms: int) -> None:
        self.offset_ms += delta_ms
        if self._frozen is not None:
            self._frozen += delta_ms

    @property
    def paused(self) -> bool:
        return self._frozen is not None

    def pause(self) -> int:
        if self._frozen is None:
            self._frozen = self.now_ms()
        return self._frozen

    def resume(self) -> None:
        if self._frozen is not None:
            self._base_ms = self._frozen - self.offset_ms
            self._t0 = time.monotonic()
            self._frozen = None
