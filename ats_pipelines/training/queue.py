"""The retrain queue (``ml.retrain_queue``): the one door to training.

Every trigger (schedule, drift, degraded outcomes, a person) calls :func:`enqueue`; the queue
sensor calls :func:`reclaim` then :func:`claim`; the training run ends its claim with
:func:`complete` or :func:`fail`. The semantics:

* **Coalescing.** At most one *pending* request per model scope (a partial unique index): a
  second request for the same scope merges into the first — the more urgent priority wins, the
  reasons are joined, the original age is kept.
* **Claiming.** Pending rows in priority (1 most urgent) then age order, locked with
  ``FOR UPDATE SKIP LOCKED`` so concurrent claimers never take the same row; a scope that already
  has a request in processing is not claimed twice (two runs would race on one Optuna study and
  one champion).
* **Fencing.** A claim increments ``attempts``; complete/fail/heartbeat name the attempt they
  hold, so a run that was presumed dead and reclaimed cannot later overwrite its successor.
* **Reclaiming.** A processing row whose heartbeat (or start, before the first beat) is older
  than the timeout belongs to a crashed run: it goes back to pending (keeping its age; the note
  is appended to ``config.reclaims``) or, after ``max_attempts``, to failed with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

STATUSES = ("pending", "processing", "completed", "failed")
_SCOPE = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")
_MAX_REASON = 2000
_MAX_ERROR = 4000


class QueueError(ValueError):
    """A request is malformed (the message names the field and the rule)."""


class StaleClaim(RuntimeError):
    """The claim a run holds is no longer current (reclaimed, or already finished)."""


@dataclass(frozen=True)
class QueueItem:
    """One row of ``ml.retrain_queue``."""

    id: int
    scope: str
    reason: str
    priority: int
    status: str
    attempts: int
    inserted_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    heartbeat_at: datetime | None
    error_message: str | None
    run_id: str | None
    requested_by: str | None
    signal_id: int | None
    config: dict[str, Any]

    @property
    def run_key(self) -> str:
        """The queue id; later attempts of a reclaimed request get ``<id>.<attempt>``."""
        return str(self.id) if self.attempts <= 1 else f"{self.id}.{self.attempts}"


@dataclass(frozen=True)
class Enqueued:
    id: int
    coalesced: bool  # merged into an existing pending request of the same scope
    priority: int


@dataclass(frozen=True)
class Reclaimed:
    id: int
    scope: str
    attempts: int
    action: str  # "requeued" | "failed"
    detail: str


_COLUMNS = (
    "id, scope, reason, priority, status, attempts, inserted_at, started_at, "
    "completed_at, heartbeat_at, error_message, run_id, requested_by, signal_id, config"
)


def _item(row: asyncpg.Record) -> QueueItem:
    config = row["config"]
    return QueueItem(**{**dict(row), "config": json.loads(config) if config else {}})


def _check_request(scope: str, reason: str, priority: int) -> None:
    if not _SCOPE.match(scope):
        raise QueueError(f"scope {scope!r}: use 1-200 of letters, digits and _ . : @ / -")
    if not reason or not reason.strip():
        raise QueueError("reason is empty: say why the model should be retrained")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
        raise QueueError(f"priority {priority!r}: use an integer 1 (most urgent) .. 5")


async def enqueue(
    conn: asyncpg.Connection,
    *,
    reason: str,
    scope: str = "default",
    priority: int = 3,
    requested_by: str | None = None,
    config: dict[str, Any] | None = None,
    signal_id: int | None = None,
) -> Enqueued:
    """Request a retrain of ``scope``; coalesces into the scope's pending request if any."""
    _check_request(scope, reason, priority)
    row = await conn.fetchrow(
        """
        INSERT INTO ml.retrain_queue AS q
               (scope, reason, priority, requested_by, config, signal_id)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6)
        ON CONFLICT (scope) WHERE status = 'pending' DO UPDATE SET
            priority = LEAST(q.priority, EXCLUDED.priority),
            reason = CASE WHEN strpos(q.reason, EXCLUDED.reason) > 0 THEN q.reason
                          ELSE left(q.reason || '; ' || EXCLUDED.reason, $7) END,
            config = q.config || EXCLUDED.config || jsonb_build_object(
                'coalesced_requests', COALESCE((q.config->>'coalesced_requests')::int, 0) + 1),
            signal_id = COALESCE(q.signal_id, EXCLUDED.signal_id),
            requested_by = COALESCE(q.requested_by, EXCLUDED.requested_by)
        RETURNING id, priority, (xmax <> 0) AS coalesced
        """,
        scope,
        reason.strip()[:_MAX_REASON],
        priority,
        requested_by,
        json.dumps(config or {}),
        signal_id,
        _MAX_REASON,
    )
    assert row is not None
    return Enqueued(id=row["id"], coalesced=row["coalesced"], priority=row["priority"])


async def claim(
    conn: asyncpg.Connection, *, limit: int = 1, claimed_by: str | None = None
) -> list[QueueItem]:
    """Take up to ``limit`` pending requests (priority, then age), marking them processing."""
    if limit < 1:
        return []
    rows = await conn.fetch(
        f"""
        WITH picked AS (
            SELECT q.id FROM ml.retrain_queue q
            WHERE q.status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM ml.retrain_queue p
                              WHERE p.scope = q.scope AND p.status = 'processing')
            ORDER BY q.priority, q.inserted_at, q.id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE ml.retrain_queue q
        SET status = 'processing', started_at = now(), heartbeat_at = now(),
            completed_at = NULL, attempts = q.attempts + 1, run_id = $2
        FROM picked WHERE q.id = picked.id
        RETURNING {", ".join("q." + c.strip() for c in _COLUMNS.split(","))}
        """,  # noqa: S608 - the column list is a constant
        limit,
        claimed_by,
    )
    items = [_item(r) for r in rows]
    return sorted(items, key=lambda i: (i.priority, i.inserted_at, i.id))


async def _finish(
    conn: asyncpg.Connection,
    queue_id: int,
    attempt: int,
    status: str,
    error: str | None,
    run_id: str | None,
) -> None:
    done = await conn.fetchval(
        """
        UPDATE ml.retrain_queue
        SET status = $3, completed_at = now(), error_message = $4,
            run_id = COALESCE($5, run_id)
        WHERE id = $1 AND attempts = $2 AND status = 'processing'
        RETURNING id
        """,
        queue_id,
        attempt,
        status,
        error,
        run_id,
    )
    if done is None:
        current = await get(conn, queue_id)
        state = (
            "missing"
            if current is None
            else (f"status={current.status} attempts={current.attempts}")
        )
        raise StaleClaim(
            f"retrain request {queue_id} attempt {attempt} is no longer processing "
            f"({state}); not marking it {status}"
        )


async def complete(
    conn: asyncpg.Connection, queue_id: int, attempt: int, *, run_id: str | None = None
) -> None:
    """The claimed request trained successfully."""
    await _finish(conn, queue_id, attempt, "completed", None, run_id)


async def fail(
    conn: asyncpg.Connection, queue_id: int, attempt: int, error: str, *, run_id: str | None = None
) -> None:
    """The claimed request's training failed with ``error``; the queue moves on."""
    message = (error or "").strip() or "training failed without a message"
    await _finish(conn, queue_id, attempt, "failed", message[:_MAX_ERROR], run_id)


async def heartbeat(
    conn: asyncpg.Connection, queue_id: int, attempt: int, *, run_id: str | None = None
) -> None:
    """Tell the reclaimer the claim's run is alive; :class:`StaleClaim` if it is not ours."""
    alive = await conn.fetchval(
        "UPDATE ml.retrain_queue SET heartbeat_at = now(), run_id = COALESCE($3, run_id) "
        "WHERE id = $1 AND attempts = $2 AND status = 'processing' RETURNING id",
        queue_id,
        attempt,
        run_id,
    )
    if alive is None:
        raise StaleClaim(
            f"retrain request {queue_id} attempt {attempt} was reclaimed or "
            "finished elsewhere; stopping this run"
        )


async def reclaim(
    conn: asyncpg.Connection, *, stale_after: timedelta, max_attempts: int = 3
) -> list[Reclaimed]:
    """Hand claims of crashed runs (no heartbeat for ``stale_after``) back to the queue."""
    out: list[Reclaimed] = []
    async with conn.transaction():
        stale = await conn.fetch(
            """
            SELECT id, scope, attempts, COALESCE(heartbeat_at, started_at) AS seen
            FROM ml.retrain_queue
            WHERE status = 'processing' AND COALESCE(heartbeat_at, started_at)
                  < now() - $1::interval
            ORDER BY id
            FOR UPDATE SKIP LOCKED
            """,
            stale_after,
        )
        for row in stale:
            seen = row["seen"].isoformat()
            note = f"attempt {row['attempts']} reclaimed: no heartbeat since {seen}"
            if row["attempts"] >= max_attempts:
                await _reclaim_as_failed(
                    conn, row["id"], f"{note}; abandoned after {row['attempts']} attempts"
                )
                out.append(Reclaimed(row["id"], row["scope"], row["attempts"], "failed", note))
                continue
            try:
                async with conn.transaction():  # a savepoint: the pending slot may be taken
                    await conn.execute(
                        """
                        UPDATE ml.retrain_queue
                        SET status = 'pending', heartbeat_at = NULL, error_message = $2,
                            config = jsonb_set(config, '{reclaims}',
                                COALESCE(config->'reclaims', '[]'::jsonb) || to_jsonb($2::text))
                        WHERE id = $1
                        """,
                        row["id"],
                        note,
                    )
                out.append(Reclaimed(row["id"], row["scope"], row["attempts"], "requeued", note))
            except asyncpg.UniqueViolationError:
                pending = await conn.fetchval(
                    "SELECT id FROM ml.retrain_queue WHERE scope = $1 AND status = 'pending'",
                    row["scope"],
                )
                detail = f"{note}; superseded by pending request {pending} of the same scope"
                await _reclaim_as_failed(conn, row["id"], detail)
                out.append(Reclaimed(row["id"], row["scope"], row["attempts"], "failed", detail))
    return out


async def _reclaim_as_failed(conn: asyncpg.Connection, queue_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE ml.retrain_queue SET status = 'failed', completed_at = now(), error_message = $2 "
        "WHERE id = $1",
        queue_id,
        error[:_MAX_ERROR],
    )


async def update_config(conn: asyncpg.Connection, queue_id: int, values: dict[str, Any]) -> None:
    """Merge ``values`` into the request's config (e.g. the data window fixed on attempt 1)."""
    await conn.execute(
        "UPDATE ml.retrain_queue SET config = config || $2::jsonb WHERE id = $1",
        queue_id,
        json.dumps(values),
    )


async def get(conn: asyncpg.Connection, queue_id: int) -> QueueItem | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM ml.retrain_queue WHERE id = $1",  # noqa: S608 - constant
        queue_id,
    )
    return None if row is None else _item(row)


async def list_requests(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    scope: str | None = None,
    limit: int = 50,
) -> list[QueueItem]:
    """Newest first, optionally filtered by status and scope."""
    if status is not None and status not in STATUSES:
        raise QueueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM ml.retrain_queue
        WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR scope = $2)
        ORDER BY inserted_at DESC, id DESC
        LIMIT $3
        """,  # noqa: S608 - the column list is a constant
        status,
        scope,
        limit,
    )
    return [_item(r) for r in rows]
