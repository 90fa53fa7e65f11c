"""Fault injection: what the emulator does wrong on purpose, per run and on demand.

A :class:`FaultConfig` fixes a schedule for a whole run (the CLI's options); a test reaches the
running :class:`Faults` to trigger one fault at an exact moment (``fail_next_rest``,
``skip_next_diff``, ``inject_malformed``, the emulator's ``drop_connections``). Every fault is
counted, so tests can assert how many were served. Random choices use a seeded generator.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultConfig:
    """A run's fault schedule; zero / empty disables each fault."""

    seed: int = 1
    drop_every_s: float = 0.0  # close every websocket connection every N wall seconds
    drop_at_s: tuple[float, ...] = ()  # ... or at these wall seconds after start
    rest_429_every: int = 0  # every Nth REST request answers 429
    retry_after_s: float = 1.0  # Retry-After of those 429s
    latency_ms: float = 0.0  # added before every REST answer and websocket batch
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter]
    malformed_every: int = 0  # a malformed frame after every Nth websocket event
    duplicate_every: int = 0  # every Nth trade event is sent twice
    reorder_every: int = 0  # every Nth trade event is swapped with the one after it
    gap_every: int = 0  # every Nth depth diff of a symbol is never sent
    time_jump_at_s: float = 0.0  # the exchange clock jumps at this wall second ...
    time_jump_ms: int = 0  # ... by this much (negative: backwards)

    def describe(self) -> str:
        active = {
            k: v
            for k, v in self.__dict__.items()
            if v and k not in ("seed", "retry_after_s", "time_jump_at_s")
        }
        return " ".join(f"{k}={v}" for k, v in active.items()) or "none"


@dataclass(frozen=True)
class RestFault:
    """One forced REST error answer; ``status=0`` drops the connection without answering."""

    status: int = 429  # 0: abort the connection instead of answering
    code: int = -1003
    msg: str = "Too many requests; current limit of IP is 6000 requests per minute."
    retry_after_s: float | None = 1.0


DISCONNECT = RestFault(status=0, retry_after_s=None)
AUTH_FAILURE = RestFault(401, -2015, "Invalid API-key, IP, or permissions for action.", None)

# Frames a real feed has been seen to send when something upstream breaks: cut-off JSON, an
# HTML error page, an event with its fields of the wrong type, an event missing its fields.
MALFORMED_FRAMES: tuple[str, ...] = (
    '{"e":"trade","E":1,"s":"BTCUSDT","t":',
    "<html><body>502 Bad Gateway</body></html>",
    '{"e":"trade","E":"soon","s":"BTCUSDT","t":"x","p":"abc","q":"-1","T":null,"m":"no"}',
    '{"e":"depthUpdate","E":1,"s":"BTCUSDT"}',
)


class Faults:
    """The running fault state of one emulator."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self.rng = random.Random(self.config.seed)
        self.counts: Counter[str] = Counter()
        self._rest_queue: deque[RestFault] = deque()
        self._skip_diffs: Counter[str] = Counter()
        self._malformed_queue = 0
        self._trade_seq = 0
        self._event_seq = 0
        self._diff_seq: Counter[str] = Counter()
        self._drop_times = sorted(self.config.drop_at_s)
        self._next_periodic_drop = self.config.drop_every_s or 0.0
        self._jumped = False

    # -- on demand -----------------------------------------------------------------------------

    def fail_next_rest(self, count: int = 1, fault: RestFault | None = None) -> None:
        """The next ``count`` REST requests answer with ``fault`` (default: 429)."""
        self._rest_queue.extend([fault or RestFault()] * count)

    def skip_next_diff(self, symbol_id: str, count: int = 1) -> None:
        """Withhold the next ``count`` depth diffs of ``symbol_id`` (a sequence gap)."""
        self._skip_diffs[symbol_id] += count

    def inject_malformed(self, count: int = 1) -> None:
        """Send ``count`` malformed frames to every connection at the next publish."""
        self._malformed_queue += count

    # -- consulted by the server ---------------------------------------------------------------

    def rest_fault(self) -> RestFault | None:
        self.counts["rest_requests"] += 1
        if self._rest_queue:
            self.counts["rest_faults"] += 1
            return self._rest_queue.popleft()
        every = self.config.rest_429_every
        if every and self.counts["rest_requests"] % every == 0:
            self.counts["rest_faults"] += 1
            return RestFault(retry_after_s=self.config.retry_after_s)
        return None

    def latency_s(self) -> float:
        c = self.config
        if not c.latency_ms and not c.jitter_ms:
            return 0.0
        return (c.latency_ms + self.rng.uniform(0.0, c.jitter_ms)) / 1000.0

    def skip_diff(self, symbol_id: str) -> bool:
        self._diff_seq[symbol_id] += 1
        every = self.config.gap_every
        if self._skip_diffs[symbol_id] > 0:
            self._skip_diffs[symbol_id] -= 1
        elif not (every and self._diff_seq[symbol_id] % every == 0):
            return False
        self.counts["diffs_skipped"] += 1
        return True

    def mangle_trades(self, events: list[str]) -> list[str]:
        """Duplicate and swap trade events as configured (ids stay those of real trades)."""
        dup, swap = self.config.duplicate_every, self.config.reorder_every
        if not dup and not swap:
            return events
        out: list[str] = []
        held: str | None = None
        for event in events:
            self._trade_seq += 1
            if swap and self._trade_seq % swap == 0 and held is None:
                held = event  # goes out after the next event
                self.counts["trades_reordered"] += 1
                continue
            out.append(event)
            if dup and self._trade_seq % dup == 0:
                out.append(event)
                self.counts["trades_duplicated"] += 1
            if held is not None:
                out.append(held)
                held = None
        if held is not None:
            out.append(held)
        return out

    def malformed_frames(self, events_sent: int) -> list[str]:
        """Malformed frames due after ``events_sent`` more events."""
        count, self._malformed_queue = self._malformed_queue, 0
        every = self.config.malformed_every
        if every:
            before = self._event_seq // every
            self._event_seq += events_sent
            count += self._event_seq // every - before
        frames = [
            MALFORMED_FRAMES[(self.counts["malformed"] + i) % len(MALFORMED_FRAMES)]
            for i in range(count)
        ]
        self.counts["malformed"] += count
        return frames

    def drop_due(self, wall_s: float) -> bool:
        due = False
        while self._drop_times and self._drop_times[0] <= wall_s:
            self._drop_times.pop(0)
            due = True
        every = self.config.drop_every_s
        if every and wall_s >= self._next_periodic_drop:
            self._next_periodic_drop = (wall_s // every + 1) * every
            due = True
        return due

    def time_jump_due(self, wall_s: float) -> int:
        c = self.config
        if c.time_jump_ms and not self._jumped and wall_s >= c.time_jump_at_s:
            self._jumped = True
            self.counts["time_jumps"] += 1
            return c.time_jump_ms
        return 0
