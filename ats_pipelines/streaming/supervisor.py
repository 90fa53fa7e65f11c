"""One supervisor for every long-lived task of the streaming service.

A supervised task is a coroutine *factory*: whatever it raises — a built-in ``ConnectionError``
from ccxt's websocket client, an ``OSError``, an asyncio timeout, a ccxt error, a parser's
``ValueError`` — is logged once (one line with the task, its kind, the error and the restart
delay), counted in ``ats_stream_task_failures_total{task,error}``, and the task is started
again after an exponential backoff with jitter (reset once a run lasted ``healthy_s``). A task
whose ``on_restart`` hook is set gets it called as soon as it failed (the trade watcher marks
its symbol "reconnected", so the trades it may have dropped are fetched over REST).

Stalls: a task calls :meth:`Supervisor.beat` whenever it makes progress. The watchdog restarts
a task silent for longer than its ``stall_s`` while its ``active`` check says it should be
producing (a trade watcher: the exchange has newer trades than the symbol's last one).

Only a :class:`~ats_pipelines.config.ConfigError` ends the service: the ``fatal`` callback
gets it and the task is not restarted.

Test seam: :meth:`inject` makes the next ``beat`` of a task (by name or kind) raise a given
exception inside that task, so chaos tests exercise the real restart path of the running
service without replacing any of its parts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter

from ats_pipelines.config import ConfigError

log = logging.getLogger("ats_pipelines.streaming.service")

Factory = Callable[[], Coroutine[Any, Any, None]]
ActiveCheck = Callable[[], Awaitable[bool]]


class FailureMetrics(Protocol):
    """What the supervisor counts in: ``task_failures{task,error}`` (the stream's metrics,
    the signal service's)."""

    task_failures: Counter


class TaskStalled(RuntimeError):
    """A supervised task made no progress for longer than its stall limit."""


@dataclass(frozen=True)
class Backoff:
    """Delay before restart ``n`` (1-based): ``min(max_s, base_s * 2**(n-1))`` scaled by a
    uniform draw in ``[1 - jitter, 1]``."""

    base_s: float = 0.2
    max_s: float = 30.0
    jitter: float = 0.5
    healthy_s: float = 60.0  # a run this long resets the failure count

    def delay_s(self, failures: int, rng: random.Random) -> float:
        ceiling = min(self.max_s, self.base_s * 2 ** min(failures - 1, 30))
        return ceiling * rng.uniform(1.0 - self.jitter, 1.0)


@dataclass(eq=False)
class Supervised:
    """One supervised task and its record."""

    name: str
    kind: str
    factory: Factory
    on_restart: Callable[[], None] | None = None
    stall_s: float | None = None
    active: ActiveCheck | None = None
    last_beat: float = field(default_factory=time.monotonic)
    failures: int = 0
    restarts: int = 0
    stalled: bool = False
    run: asyncio.Task[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None


class Supervisor:
    """Starts, watches and restarts the service's tasks; see the module docstring."""

    def __init__(
        self,
        metrics: FailureMetrics,
        *,
        fatal: Callable[[BaseException, str], None],
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        service: str = "stream",
    ) -> None:
        self.metrics = metrics
        self.service = service  # names the log event: ``<service>_task_failed``
        self.fatal = fatal
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.tasks: dict[str, Supervised] = {}
        self.failures_seen = 0
        self._injected: dict[str, list[BaseException]] = {}
        self._lock = threading.Lock()  # writer lanes beat from the bar lane's thread

    # -- starting --------------------------------------------------------------------------

    def start(
        self,
        name: str,
        kind: str,
        factory: Factory,
        *,
        on_restart: Callable[[], None] | None = None,
        stall_s: float | None = None,
        active: ActiveCheck | None = None,
    ) -> asyncio.Task[None]:
        """Run ``factory()`` on the running loop until it returns, restarting it on errors."""
        entry = Supervised(name, kind, factory, on_restart, stall_s, active)
        self.tasks[name] = entry
        return asyncio.get_running_loop().create_task(self._keep(entry), name=name)

    def once(self, name: str, kind: str, factory: Factory) -> asyncio.Task[None]:
        """Run ``factory()`` once; an error is logged and counted, not restarted (one-shot
        work its caller schedules again, e.g. a recovery the clock retries)."""

        async def guarded() -> None:
            try:
                await factory()
            except ConfigError as exc:
                self.fatal(exc, name)
            except Exception as exc:
                self.record(name, kind, exc, restart_in=None)

        return asyncio.get_running_loop().create_task(guarded(), name=name)

    async def _keep(self, entry: Supervised) -> None:
        loop = asyncio.get_running_loop()
        entry.loop = loop
        me = asyncio.current_task()
        while True:
            started = time.monotonic()
            entry.last_beat = started
            entry.run = loop.create_task(entry.factory(), name=f"{entry.name}:run")
            try:
                await entry.run
                return
            except asyncio.CancelledError:
                if not entry.stalled or (me is not None and me.cancelling()):
                    raise
                error: Exception = TaskStalled(
                    f"no progress for {entry.stall_s}s while it should be producing"
                )
            except ConfigError as exc:
                self.fatal(exc, entry.name)
                return
            except Exception as exc:
                error = exc
            entry.stalled = False
            if time.monotonic() - started >= self.backoff.healthy_s:
                entry.failures = 0
            entry.failures += 1
            entry.restarts += 1
            delay = self.backoff.delay_s(entry.failures, self.rng)
            self.record(entry.name, entry.kind, error, restart_in=delay)
            if entry.on_restart is not None:  # at once: recovery need not wait for the backoff
                entry.on_restart()
            await asyncio.sleep(delay)

    def record(self, name: str, kind: str, exc: BaseException, restart_in: float | None) -> None:
        self.failures_seen += 1
        self.metrics.task_failures.labels(task=kind, error=type(exc).__name__).inc()
        log.error(
            "event=%s_task_failed task=%s kind=%s error=%s: %s restart_in_s=%s",
            self.service,
            name,
            kind,
            type(exc).__name__,
            str(exc)[:300],
            "never" if restart_in is None else f"{restart_in:.3f}",
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    # -- progress, stalls ------------------------------------------------------------------

    def beat(self, name: str) -> None:
        """``name`` made progress; raises an exception injected for it (test seam)."""
        entry = self.tasks.get(name)
        if entry is not None:
            entry.last_beat = time.monotonic()
        if self._injected:
            self._raise_injected(name, entry.kind if entry is not None else None)

    def _raise_injected(self, name: str, kind: str | None) -> None:
        with self._lock:
            for key in (name, kind):
                pending = self._injected.get(key) if key is not None else None
                if pending:
                    exc = pending.pop(0)
                    if not pending:
                        del self._injected[key]  # type: ignore[arg-type]
                    raise exc

    def inject(self, target: str, exc: BaseException) -> None:
        """Test seam: the next :meth:`beat` of the task named (or of the kind) ``target``
        raises ``exc`` inside that task."""
        with self._lock:
            self._injected.setdefault(target, []).append(exc)

    def pending_injections(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._injected.values())

    async def watch(self, interval_s: float) -> None:
        """The watchdog: restart tasks silent past their ``stall_s`` that should produce."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for entry in list(self.tasks.values()):
                run = entry.run
                if entry.stall_s is None or run is None or run.done() or entry.stalled:
                    continue
                if now - entry.last_beat < entry.stall_s:
                    continue
                if entry.active is not None:
                    try:
                        if not await entry.active():
                            continue
                    except Exception as exc:  # no evidence either way: wait for the next look
                        log.warning("event=stall_check_failed task=%s error=%r", entry.name, exc)
                        continue
                entry.stalled = True
                loop = entry.loop
                if loop is None or loop is asyncio.get_running_loop():
                    run.cancel()
                else:
                    loop.call_soon_threadsafe(run.cancel)
