"""The writer: bounded queues in front of batched, idempotent database writes.

Each *lane* has its own connection, so latency-critical bars never wait behind a large trade
write. Producers ``await lane.put(batch)`` on a bounded queue; an intake task moves batches to
an in-memory pending list; a commit task writes them, oldest first, in one transaction per
round (every write goes through the bulk writer or the quarantine writer, both idempotent).

* Database up but slow: pending rows stop at ``max_pending_rows``, the intake waits, the
  queue fills, producers wait — back-pressure, memory stays bounded.
* Database down: the intake keeps accepting (the service keeps running) up to ``buffer_rows``
  in memory; beyond that, batches go to spill files (``spill.SpillStore``). While any file
  exists new batches go to files too, so memory always holds the oldest rows and the files the
  newer ones. The commit task retries with capped exponential backoff and replays memory, then
  the files, in order, when the database is back.
* A batch the database refuses for its content (not a connection problem) is written batch by
  batch to find it, and its rows go to ``ops.quarantine`` (rule ``stream.db_rejected``) instead
  of blocking the lane forever.
* ``close()`` drains everything it can within a deadline; what the database could not take by
  then is spilled, so a stop never loses accepted rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl
import pyarrow as pa

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import DatabaseUnavailable, connect
from ats_pipelines.db.quarantine import quarantine
from ats_pipelines.lib.validation import payload_json
from ats_pipelines.streaming.metrics import StreamMetrics
from ats_pipelines.streaming.spill import Batch, SpillStore
from ats_pipelines.streaming.supervisor import Supervisor

log = logging.getLogger(__name__)
MAX_ROUND_ROWS = 100_000
MAX_ROUND_FILES = 500
CONNECT_TIMEOUT_S = 15.0
REJECTED_RULE = "stream.db_rejected"
_DATASETS = {
    "market.candles": "candles",
    "market.trades": "trades",
    "market.order_book_snapshots": "order_book",
}
_LAST = "ops.stream_state"  # written after the bars it covers, in the same transaction

OnCommit = Callable[[list[Batch], float], None]


def is_transient(exc: BaseException) -> bool:
    """A connection-level failure (retry later), as opposed to rows the server refuses."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | DatabaseUnavailable
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.InternalClientError,
    )


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


async def write_batches(conn: asyncpg.Connection, batches: Sequence[Batch]) -> dict[str, int]:
    """Write ``batches`` in one transaction; returns rows received per table.

    A round holding one table's rows only (the usual round of the bar lane: a few closed bars)
    needs no ``BEGIN``/``COMMIT`` around it: each write below is atomic by itself (one statement,
    or the bulk writer's own transaction), which saves two round trips per commit.
    """
    groups: dict[tuple[str, str | None, str], list[pa.Table]] = {}
    for b in batches:
        groups.setdefault((b.table, b.dataset, b.on_conflict), []).append(b.data)
    order = sorted(groups, key=lambda k: k[0] == _LAST)  # stable: state rows last
    counts: dict[str, int] = {}
    scope = conn.transaction() if len(order) > 1 else contextlib.nullcontext()
    async with scope:
        for table, dataset, on_conflict in order:
            data = _concat(groups[(table, dataset, on_conflict)])
            if table == "ops.quarantine":
                frame = pl.from_arrow(data)
                assert isinstance(frame, pl.DataFrame)
                await quarantine(conn, frame, dataset=dataset or "other", source="stream")
            else:
                await bulk_write(
                    conn,
                    table,
                    data,
                    on_conflict="update" if on_conflict == "update" else "nothing",
                )
            counts[table] = counts.get(table, 0) + data.num_rows
    return counts


def _rejected(batch: Batch, error: BaseException) -> Batch:
    """The rows of a refused batch as quarantine rows naming the database's complaint."""
    rows = []
    for i, row in enumerate(batch.data.to_pylist()):
        payload = payload_json(row)
        rows.append(
            {
                "rule": REJECTED_RULE,
                "reason": f"{batch.table} refused the row: {type(error).__name__}: {error}"[:2000],
                "location": f"stream writer {batch.table} row {i}",
                "exchange": row.get("exchange"),
                "symbol": row.get("symbol"),
                "timeframe": row.get("timeframe"),
                "ts": row.get("ts"),
                "payload": payload,
                "row_hash": hashlib.sha256(payload.encode()).hexdigest(),
                "row": i,
            }
        )
    data = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("rule", pa.string()),
                ("reason", pa.string()),
                ("location", pa.string()),
                ("exchange", pa.string()),
                ("symbol", pa.string()),
                ("timeframe", pa.string()),
                ("ts", pa.timestamp("us", tz="UTC")),
                ("payload", pa.string()),
                ("row_hash", pa.string()),
                ("row", pa.int64()),
            ]
        ),
    )
    return Batch("ops.quarantine", data, _DATASETS.get(batch.table, "other"))


class Lane:
    """One queue, one connection, one ordered stream of commits."""

    def __init__(
        self,
        name: str,
        database_url: str,
        *,
        spill_dir: Path,
        metrics: StreamMetrics,
        queue_items: int,
        max_pending_rows: int,
        buffer_rows: int,
        retry_base_s: float = 0.2,
        retry_max_s: float = 5.0,
        on_commit: OnCommit | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name, self.url = name, database_url
        self.metrics = metrics
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=queue_items)
        self.pending: deque[Batch] = deque()
        self.pending_rows = 0
        self.max_pending_rows, self.buffer_rows = max_pending_rows, buffer_rows
        self.spill = SpillStore(spill_dir)
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self.on_commit = on_commit
        self.rng = rng or random.Random()
        self.healthy = True
        self.failures = 0
        self.committed_rows = 0
        self.spilled_batches = 0
        self._conn: asyncpg.Connection | None = None
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._retry_at = 0.0
        self._intake_done = False
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._in_hand: Batch | None = None
        self.accepted = 0  # batches handed over so far
        self.committed_batches = 0
        self._committed = asyncio.Event()
        self.supervisor: Supervisor | None = None

    # -- producers -------------------------------------------------------------------------

    async def put(self, batch: Batch) -> None:
        """Hand over a batch; waits while the lane is full (back-pressure)."""
        if batch.rows:
            await self.queue.put(batch)
            self.accepted += 1
            self.metrics.queue_depth.labels(lane=self.name).set(self.queue.qsize())

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the intake and commit tasks (under ``supervisor``: restarted on errors)."""
        self.supervisor = supervisor
        names = (f"writer-{self.name}-intake", f"writer-{self.name}")
        if supervisor is not None:
            self._tasks = [
                supervisor.start(names[0], "writer-intake", self._intake),
                supervisor.start(names[1], "writer", self._commit_loop),
            ]
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._intake(), name=names[0]),
            loop.create_task(self._commit_loop(), name=names[1]),
        ]

    def _beat(self, task: str) -> None:
        if self.supervisor is not None:
            self.supervisor.beat(task)

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    @property
    def backlog_rows(self) -> int:
        return self.pending_rows + self.spill.rows

    @property
    def quiet(self) -> bool:
        """Nothing handed over is still on its way to the database."""
        return not self.queue.qsize() and not self.backlog_rows

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until everything handed over so far is committed (tests, checkpoints)."""
        deadline = time.monotonic() + timeout
        while self.queue.qsize() or self.pending or self.spill:
            if time.monotonic() > deadline:
                return False
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 0.05)
        return True

    async def wait_committed(self, batches: int, timeout: float) -> bool:
        """Wait until the first ``batches`` handed over are committed (commits keep the order
        of ``put``); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.committed_batches < batches:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._committed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._committed.wait(), min(left, 0.5))
        return True

    # -- intake ----------------------------------------------------------------------------

    async def _intake(self) -> None:
        name = f"writer-{self.name}-intake"
        while True:
            self._beat(name)
            # a batch taken before a failure is still in hand when the task restarts
            batch = self._in_hand if self._in_hand is not None else await self.queue.get()
            self._in_hand = batch
            self.metrics.queue_depth.labels(lane=self.name).set(self.queue.qsize())
            if batch is None:
                self._intake_done = True
                self._work.set()
                return
            while self.healthy and not self.spill and self.pending_rows >= self.max_pending_rows:
                self._room.clear()
                await self._room.wait()
            if self.spill or (
                not self.healthy and self.pending_rows + batch.rows > self.buffer_rows
            ):
                self.spill.append(batch)
                self.spilled_batches += 1
                self.metrics.spilled.labels(lane=self.name).inc()
            else:
                self.pending.append(batch)
                self.pending_rows += batch.rows
            self._in_hand = None
            self.metrics.pending_rows.labels(lane=self.name).set(self.pending_rows)
            self._work.set()

    # -- commits ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect now (at start, before the load); a failure is retried by the commits."""
        with contextlib.suppress(DatabaseUnavailable, OSError):
            await self._connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            # generous: a loop busy with a burst of messages answers handshakes slowly
            self._conn = await connect(self.url, timeout=CONNECT_TIMEOUT_S)
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _take_round(self) -> list[Batch]:
        taken, rows = [], 0
        for batch in self.pending:
            if taken and rows + batch.rows > MAX_ROUND_ROWS:
                break
            taken.append(batch)
            rows += batch.rows
        return taken

    async def _commit_round(self) -> bool:
        """Write the oldest rows (memory first, then files); False when nothing was left."""
        if self.pending:
            batches = self._take_round()
            await self._write(batches)
            for _ in batches:
                self.pending.popleft()
            self.pending_rows -= sum(b.rows for b in batches)
            self.metrics.pending_rows.labels(lane=self.name).set(self.pending_rows)
            self._room.set()
            return True
        files = self.spill.files()
        if files:  # many small files per round, so a replay outruns new arrivals
            batches, rows = [], 0
            for path in files[:MAX_ROUND_FILES]:
                batch = SpillStore.read(path)
                if batches and rows + batch.rows > MAX_ROUND_ROWS:
                    break
                batches.append((path, batch))
                rows += batch.rows
            await self._write([b for _, b in batches])
            for path, batch in batches:
                self.spill.remove(path, batch.rows)
            return True
        return False

    async def _write(self, batches: list[Batch]) -> None:
        conn = await self._connection()
        try:
            counts = await write_batches(conn, batches)
        except Exception as exc:
            if is_transient(exc) or len(batches) == 0:
                raise
            counts = await self._write_one_by_one(conn, batches, exc)
        committed = time.time()
        for table, n in counts.items():
            self.metrics.rows_written.labels(table=table).inc(n)
        self.committed_rows += sum(counts.values())
        self.committed_batches += len(batches)  # in order: memory, then files, oldest first
        self._committed.set()
        if self.on_commit is not None:
            self.on_commit(batches, committed)

    async def _write_one_by_one(
        self, conn: asyncpg.Connection, batches: list[Batch], first: BaseException
    ) -> dict[str, int]:
        log.error(
            "event=stream_write_refused lane=%s batches=%s error=%s: finding the batch",
            self.name,
            len(batches),
            first,
        )
        counts: dict[str, int] = {}
        for batch in batches:
            try:
                done = await write_batches(conn, [batch])
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.error(
                    "event=stream_rows_quarantined lane=%s table=%s rows=%s error=%s",
                    self.name,
                    batch.table,
                    batch.rows,
                    exc,
                )
                done = await write_batches(conn, [_rejected(batch, exc)])
            for table, n in done.items():
                counts[table] = counts.get(table, 0) + n
        return counts

    async def _commit_loop(self) -> None:
        name = f"writer-{self.name}"
        while True:
            self._beat(name)
            if not self.pending and not self.spill:
                self._idle.set()
                if self._intake_done:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            delay = self._retry_at - time.monotonic()
            if not self.healthy and delay > 0:
                await asyncio.sleep(min(delay, 0.05))
                continue
            try:
                await self._commit_round()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("event=stream_writer_failed lane=%s", self.name)
                await self._failed(exc)
                continue
            if not self.healthy:
                log.info(
                    "event=stream_db_back lane=%s after_failures=%s backlog_rows=%s",
                    self.name,
                    self.failures,
                    self.backlog_rows,
                )
            self.healthy, self.failures = True, 0
            self.metrics.db_up.labels(lane=self.name).set(1)

    async def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.healthy = False
        self._room.set()  # the intake stops waiting for room: it buffers, then spills
        self.metrics.db_errors.labels(lane=self.name).inc()
        self.metrics.db_up.labels(lane=self.name).set(0)
        await self._drop_connection()
        ceiling = min(self.retry_max_s, self.retry_base_s * 2 ** min(self.failures - 1, 16))
        delay = ceiling * self.rng.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay
        log.warning(
            "event=stream_db_unavailable lane=%s failures=%s retry_in_s=%.2f "
            "pending_rows=%s spilled_rows=%s error=%s",
            self.name,
            self.failures,
            delay,
            self.pending_rows,
            self.spill.rows,
            f"{type(exc).__name__}: {exc}"[:300],
        )
        # rows beyond the in-memory bound go to disk now, not only when new ones arrive
        while self.pending_rows > self.buffer_rows and len(self.pending) > 1:
            self._spill_newest()

    def _spill_newest(self) -> None:
        batch = self.pending.pop()
        self.pending_rows -= batch.rows
        self.spill.prepend([batch])
        self.spilled_batches += 1
        self.metrics.spilled.labels(lane=self.name).inc()

    # -- shutdown --------------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Commit what is queued within ``timeout`` seconds; spill the rest; stop."""
        await self.queue.put(None)
        done, _ = await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            if task not in done:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_hand is not None:  # taken by an intake cancelled before placing it
            self.pending.append(self._in_hand)
            self.pending_rows += self._in_hand.rows
            self._in_hand = None
        while True:  # the intake may have stopped before the end marker (cancelled)
            try:
                batch = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if batch is not None:
                self.pending.append(batch)
                self.pending_rows += batch.rows
        if self.pending:
            log.warning(
                "event=stream_shutdown_spill lane=%s batches=%s rows=%s dir=%s",
                self.name,
                len(self.pending),
                self.pending_rows,
                self.spill.directory,
            )
            self.spill.prepend(list(self.pending))
            self.pending.clear()
            self.pending_rows = 0
        await self._drop_connection()

    async def abandon(self) -> None:
        """Stop at once, dropping what is not committed (a crash, for tests)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pending.clear()
        self.pending_rows = 0
        await self._drop_connection()

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.queue.qsize(),
            "pending_rows": self.pending_rows,
            "spilled_rows": self.spill.rows,
            "spill_files": len(self.spill),
            "committed_rows": self.committed_rows,
            "healthy": self.healthy,
        }
