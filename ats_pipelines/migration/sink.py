"""Where a file's validated rows go: the bulk writer (which itself copies a chunk straight in
when its series has nothing stored in the chunk's time range, the usual case in a first
migration), and the quarantine. The ledger keeps which write path each chunk took.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import asyncpg
import polars as pl

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.migration import validation
from ats_pipelines.migration.checksum import Digest
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS
from ats_pipelines.migration.discovery import DiscoveredFile
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
        self.inserted = self.existing = 0
        self.write_s = 0.0
        self.paths: Counter[str] = Counter()

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
        result = await bulk_write(
            self.conn,
            self.spec.table,
            rows,
            on_conflict="nothing",
            chunk_rows=max(self.config.chunk_rows, frame.height),
        )
        self.paths.update(result.paths)
        self.inserted += result.inserted
        self.existing += result.skipped
        if result.skipped:
            await add_keys(self.conn, self.spec, frame)
        self._done(frame, t0)

    def _done(self, frame: pl.DataFrame, started: float) -> None:
        self.write_s += time.perf_counter() - started
        if self.progress is not None:
            self.progress(self.file, frame.height)
