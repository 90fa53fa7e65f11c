"""The blocking asyncpg facade: usable from plain threads, serialised, reopened when closed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import asyncpg

from ats_pipelines.db.sync import SyncConnection


def test_threads_share_one_connection_and_get_their_own_answers(db_url: str) -> None:
    db = SyncConnection(db_url)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: db.fetch("SELECT $1::int * 2", i)[0][0], range(40)))
        assert answers == [i * 2 for i in range(40)]
        pids = {db.fetch("SELECT pg_backend_pid()")[0][0] for _ in range(3)}
        assert len(pids) == 1
    finally:
        db.close()


def test_a_closed_connection_reopens_and_close_is_idempotent(db_url: str) -> None:
    db = SyncConnection(db_url)

    async def terminate(conn: asyncpg.Connection) -> None:
        await conn.close()

    try:
        first = db.fetch("SELECT pg_backend_pid()")[0][0]
        db.run(terminate)
        assert db.fetch("SELECT pg_backend_pid()")[0][0] != first
    finally:
        db.close()
        db.close()
