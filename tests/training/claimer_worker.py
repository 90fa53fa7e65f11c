"""A claimer process for the concurrency tests (run as a script, not collected by pytest).

usage: claimer_worker.py DATABASE_URL OUT_FILE MODE
MODE ``drain``: claim 1-4 rows at a time until the queue is empty, completing each; write the
claimed ids, one per line. MODE ``crash``: claim one row, write its id, then die (SIGKILL)
without completing it — a training run that crashed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from ats_pipelines.db.connect import connection
from ats_pipelines.training import queue


async def drain(url: str) -> list[int]:
    claimed: list[int] = []
    async with connection(url) as conn:
        while True:
            items = await queue.claim(
                conn, limit=random.randint(1, 4), claimed_by=f"pid-{os.getpid()}"
            )
            if not items:
                break
            for item in items:
                claimed.append(item.id)
                await queue.complete(conn, item.id, item.attempts)
    return claimed


async def crash(url: str, out: Path) -> None:
    async with connection(url) as conn:
        items = await queue.claim(conn, limit=1, claimed_by=f"pid-{os.getpid()}")
        await asyncio.to_thread(out.write_text, "".join(f"{i.id}\n" for i in items))
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    url, out, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "drain":
        out.write_text("".join(f"{i}\n" for i in asyncio.run(drain(url))))
    else:
        asyncio.run(crash(url, out))
