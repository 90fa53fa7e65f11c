"""Where a file's validated rows go: the bulk writer, with a probe for untouched ranges.

The bulk writer stages every chunk, checks which keys exist and then inserts; for a legacy
file whose time range of its series is still empty (the usual case in a first migration) that
staging doubles the work. So each chunk first asks whether any row of its series lies in its
time range: if none does, the rows go in with the bulk writer's raw binary COPY (``copy_raw``)
inside a savepoint; if a writer raced us into the range, the key conflict rolls the savepoint
back and the chunk takes the bulk writer's normal path, which is always correct.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import asyncpg
import polars as pl

from ats_pipelines.db.bulk import bulk_write, copy_raw
from ats_pipelines.db.sqlid import qualified, quote_ident
from ats_pipelines.migration import validation
from ats_pipelines.migration.checksum import Digest
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.normalise import TS
from ats_pipelines.migration.verify import add_keys

ProgressFn = Callable[[DiscoveredFile, int], None]  # (file, rows just written)


class DatabaseSink:
    def __init__(
        self,
        conn: asyncpg.Connection,
        file: DiscoveredFile,
        batch_id: int,
        config: MigrationConfig,
        progress: ProgressFn | None,
    ) -> None:
        self.conn, self.file, self.batch_id = conn, file, batch_id
        self.config, self.progress = config, progress
        self.spec = SPECS[file.dataset]
        self.series = self.spec.series(file)
        self.inserted = self.existing = 0
        self.write_s = 0.0
        self.paths: Counter[str] = Counter()
        conditions = [f"{quote_ident(k)} = ${i + 1}" for i, k in enumerate(self.series)]
        n = len(self.series)
        conditions.append(f"{quote_ident(TS)} BETWEEN ${n + 1} AND ${n + 2}")
        self.probe_sql = (
            f"SELECT EXISTS (SELECT 1 FROM {qualified(self.spec.table)} "  # noqa: S608
            f"WHERE {' AND '.join(conditions)})"
        )

    async def rejected(self, frame: pl.DataFrame) -> None:
        await validation.quarantine(
            self.conn,
            frame,
            dataset=self.file.dataset,
            source=self.config.source,
            batch_id=self.batch_id,
        )

    async def accept(self, frame: pl.DataFrame, digest: Digest) -> None:
        t0 = time.perf_counter()
        rows = self.spec.rows_for_db(frame, self.file, self.config.source, self.batch_id)
        if not await self._range_taken(frame):
            try:
                async with self.conn.transaction():  # savepoint
                    await copy_raw(self.conn, self.spec.table, rows.to_arrow())
            except asyncpg.UniqueViolationError:
                self.paths["copy_conflict"] += 1
            else:
                self.paths["copy"] += 1
                self.inserted += frame.height
                self._done(frame, t0)
                return
        result = await bulk_write(
            self.conn,
            self.spec.table,
            rows,
            on_conflict="nothing",
            chunk_rows=max(self.config.chunk_rows, frame.height),
        )
        self.paths["bulk_write"] += 1
        self.inserted += result.inserted
        self.existing += result.skipped
        if result.skipped:
            await add_keys(self.conn, self.spec, frame)
        self._done(frame, t0)

    async def _range_taken(self, frame: pl.DataFrame) -> bool:
        first, last = frame[TS].min(), frame[TS].max()
        return bool(await self.conn.fetchval(self.probe_sql, *self.series.values(), first, last))

    def _done(self, frame: pl.DataFrame, started: float) -> None:
        self.write_s += time.perf_counter() - started
        if self.progress is not None:
            self.progress(self.file, frame.height)
