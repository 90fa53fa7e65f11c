"""A daily request budget (Birdeye's free tier) and a small response cache.

The quota counts requests per UTC day and refuses the one past the limit *before* it is sent,
so the platform never burns the provider's allowance on a request it would lose anyway. With a
state file the count survives restarts (several processes sharing a key should share the file).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class QuotaExhausted(RuntimeError):
    """The day's request budget is spent; the message says when it resets."""


class DailyQuota:
    def __init__(
        self,
        limit: int,
        state_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "birdeye",
    ) -> None:
        if limit < 0:
            raise ValueError(f"daily quota {limit} must be >= 0")
        self.limit = limit
        self.state_path = state_path
        self.clock = clock
        self.name = name
        self._day = ""
        self._used = 0
        self._load()

    def _today(self) -> str:
        return datetime.fromtimestamp(self.clock(), tz=UTC).date().isoformat()

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        try:
            state = json.loads(self.state_path.read_text())
            self._day, self._used = str(state["day"]), int(state["used"])
        except (ValueError, KeyError, TypeError):
            log.warning(
                "event=quota_state_unreadable path=%s action=start_from_zero", self.state_path
            )

    def _save(self) -> None:
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"day": self._day, "used": self._used}))
            tmp.replace(self.state_path)

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._used = today, 0

    @property
    def used(self) -> int:
        self._roll()
        return self._used

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def acquire(self) -> None:
        """Count one request, or raise :class:`QuotaExhausted` without counting it."""
        self._roll()
        if self._used >= self.limit:
            raise QuotaExhausted(
                f"{self.name} daily quota of {self.limit} requests is used up "
                f"for {self._day} (UTC); it resets at 00:00 UTC"
            )
        self._used += 1
        self._save()

    def exhaust(self) -> None:
        """The provider said the budget is gone (429): believe it until the day ends."""
        self._roll()
        self._used = max(self._used, self.limit)
        self._save()


class TTLCache:
    """Responses by request key, each valid for ``ttl_s`` seconds; least recent evicted."""

    def __init__(
        self, ttl_s: float, max_entries: int = 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        entry = self._items.get(key)
        if entry is None or self.clock() - entry[0] > self.ttl_s:
            self._items.pop(key, None)
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
