"""The retrain queue on the real database: coalescing, claim order, concurrent claimers in
separate processes, crash reclaim, fencing and failures."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.training import queue

WORKER = Path(__file__).with_name("claimer_worker.py")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": "x", "priority": 0}, "priority 0"),
        ({"reason": "x", "priority": 6}, "priority 6"),
        ({"reason": "x", "priority": True}, "priority True"),
        ({"reason": "  "}, "reason is empty"),
        ({"reason": "x", "scope": "bad scope!"}, "scope 'bad scope!'"),
    ],
)
async def test_malformed_requests_are_refused_with_the_rule(
    clean_db: str, kwargs: dict, message: str
) -> None:
    async with connection(clean_db) as conn:
        with pytest.raises(queue.QueueError, match=message):
            await queue.enqueue(conn, **kwargs)
        assert await conn.fetchval("SELECT count(*) FROM ml.retrain_queue") == 0


async def test_duplicate_requests_for_a_scope_coalesce(clean_db: str) -> None:
    async with connection(clean_db) as conn:
        first = await queue.enqueue(conn, scope="btc", reason="weekly schedule", priority=4)
        again = await queue.enqueue(
            conn, scope="btc", reason="feature drift", priority=2, config={"n_trials": 5}
        )
        same = await queue.enqueue(conn, scope="btc", reason="feature drift", priority=3)
        other = await queue.enqueue(conn, scope="eth", reason="weekly schedule")
        assert not first.coalesced and again.coalesced and same.coalesced
        assert first.id == again.id == same.id != other.id
        item = await queue.get(conn, first.id)
        assert item is not None
        assert item.priority == 2  # the most urgent request wins
        assert item.reason == "weekly schedule; feature drift"  # joined once each
        assert item.config["n_trials"] == 5 and item.config["coalesced_requests"] == 2
        assert (
            await conn.fetchval("SELECT count(*) FROM ml.retrain_queue WHERE status = 'pending'")
            == 2
        )


async def test_claims_follow_priority_then_age_and_skip_busy_scopes(clean_db: str) -> None:
    async with connection(clean_db) as conn:
        low = await queue.enqueue(conn, scope="a", reason="old but low", priority=5)
        urgent_old = await queue.enqueue(conn, scope="b", reason="urgent", priority=1)
        urgent_new = await queue.enqueue(conn, scope="c", reason="urgent too", priority=1)
        mid = await queue.enqueue(conn, scope="d", reason="mid", priority=3)
        claimed = await queue.claim(conn, limit=3, claimed_by="test")
        assert [i.id for i in claimed] == [urgent_old.id, urgent_new.id, mid.id]
        assert all(i.status == "processing" and i.attempts == 1 and i.started_at for i in claimed)
        # a new request for a scope that is being trained waits until that run ends
        waiting = await queue.enqueue(conn, scope="b", reason="again", priority=1)
        assert not waiting.coalesced  # processing rows do not absorb new requests
        assert [i.id for i in await queue.claim(conn, limit=5)] == [low.id]
        await queue.complete(conn, urgent_old.id, 1)
        assert [i.id for i in await queue.claim(conn, limit=5)] == [waiting.id]


def _spawn(url: str, out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), url, str(out), mode])


async def test_concurrent_claimer_processes_take_each_row_exactly_once(
    clean_db: str, tmp_path: Path
) -> None:
    async with connection(clean_db) as conn:
        await conn.execute(
            "INSERT INTO ml.retrain_queue (scope, reason, priority) "
            "SELECT 'scope-' || g, 'load test', 1 + g % 5 FROM generate_series(1, 300) g"
        )
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM ml.retrain_queue")}
    outs = [tmp_path / f"claimer{i}.txt" for i in range(4)]
    procs = [_spawn(clean_db, out, "drain") for out in outs]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    per_process = [[int(x) for x in out.read_text().split()] for out in outs]
    claimed = [i for ids_ in per_process for i in ids_]
    assert len(claimed) == len(set(claimed)) == 300  # nobody took a row twice
    assert set(claimed) == ids
    assert sum(1 for p in per_process if p) >= 2  # the claimers really did share the work
    async with connection(clean_db) as conn:
        rows = await conn.fetch("SELECT status, attempts FROM ml.retrain_queue")
    assert {(r["status"], r["attempts"]) for r in rows} == {("completed", 1)}


async def test_a_crashed_claim_is_reclaimed_and_its_late_finish_is_fenced(
    clean_db: str, tmp_path: Path
) -> None:
    async with connection(clean_db) as conn:
        request = await queue.enqueue(conn, scope="crashy", reason="manual", priority=2)
    out = tmp_path / "crash.txt"
    proc = _spawn(clean_db, out, "crash")
    assert proc.wait(timeout=60) == -9  # killed while holding the claim
    assert out.read_text().split() == [str(request.id)]
    async with connection(clean_db) as conn:
        stuck = await queue.get(conn, request.id)
        assert stuck is not None and stuck.status == "processing"
        # a healthy claim younger than the timeout stays put
        assert await queue.reclaim(conn, stale_after=timedelta(hours=1)) == []
        reclaimed = await queue.reclaim(conn, stale_after=timedelta(0))
        assert [(r.id, r.action) for r in reclaimed] == [(request.id, "requeued")]
        again = await queue.claim(conn, limit=1)
        assert [(i.id, i.attempts, i.run_key) for i in again] == [
            (request.id, 2, f"{request.id}.2")
        ]
        # the crashed attempt cannot overwrite its successor
        with pytest.raises(queue.StaleClaim, match="attempt 1"):
            await queue.complete(conn, request.id, 1)
        with pytest.raises(queue.StaleClaim):
            await queue.heartbeat(conn, request.id, 1)
        await queue.complete(conn, request.id, 2, run_id="run-2")
        done = await queue.get(conn, request.id)
        assert done is not None and (done.status, done.run_id) == ("completed", "run-2")
        assert done.error_message is None
        assert [n.split(":")[0] for n in done.config["reclaims"]] == ["attempt 1 reclaimed"]


async def test_reclaim_gives_up_after_max_attempts_and_yields_to_a_pending_request(
    clean_db: str,
) -> None:
    async with connection(clean_db) as conn:
        tired = await queue.enqueue(conn, scope="tired", reason="x")
        await queue.claim(conn)
        await queue.reclaim(conn, stale_after=timedelta(0), max_attempts=2)
        await queue.claim(conn)
        result = await queue.reclaim(conn, stale_after=timedelta(0), max_attempts=2)
        assert [(r.id, r.action) for r in result] == [(tired.id, "failed")]
        failed = await queue.get(conn, tired.id)
        assert failed is not None and failed.status == "failed"
        assert "abandoned after 2 attempts" in (failed.error_message or "")

        busy = await queue.enqueue(conn, scope="busy", reason="first")
        await queue.claim(conn)
        newer = await queue.enqueue(conn, scope="busy", reason="second")
        result = await queue.reclaim(conn, stale_after=timedelta(0))
        assert [(r.id, r.action) for r in result] == [(busy.id, "failed")]
        assert f"superseded by pending request {newer.id}" in result[0].detail
        assert (await queue.get(conn, newer.id)).status == "pending"  # type: ignore[union-attr]


async def test_a_failed_training_keeps_its_error_and_the_queue_moves_on(clean_db: str) -> None:
    async with connection(clean_db) as conn:
        first = await queue.enqueue(conn, scope="one", reason="x", priority=1)
        second = await queue.enqueue(conn, scope="two", reason="y", priority=2)
        [item] = await queue.claim(conn)
        assert item.id == first.id
        await queue.fail(conn, item.id, item.attempts, "ValueError: no rows in the window")
        failed = await queue.get(conn, first.id)
        assert failed is not None and failed.status == "failed" and failed.completed_at
        assert failed.error_message == "ValueError: no rows in the window"
        assert [i.id for i in await queue.claim(conn)] == [second.id]
        listed = await queue.list_requests(conn, status="failed")
        assert [i.id for i in listed] == [first.id]
        with pytest.raises(queue.QueueError, match="status 'nope'"):
            await queue.list_requests(conn, status="nope")
