"""Migrating one file: claim its ledger row, load it in ONE transaction, verify, archive.

Crash safety: the ledger row goes to 'loading' (committed) before the load transaction
starts, and the rows, the quarantined rows and the 'loaded' ledger update commit together.
A process killed mid-file therefore leaves a 'loading' row and no rows at all (the server
rolls the transaction back); the next run sees the batch's advisory lock free, removes
anything tagged with the batch (nothing, normally) and loads the file again under the same
batch id. A file killed between commit and verification is likewise removed and reloaded,
since verification needs the session's record of pre-existing keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from polars.exceptions import PanicException

from ats_pipelines.migration import ledger
from ats_pipelines.migration.archive import (
    ArchiveError,
    archive_target,
    file_checksum,
    move_to_archive,
)
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS
from ats_pipelines.migration.dedupe import Unsorted
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.pipeline import SourcePipeline, SourceStats
from ats_pipelines.migration.refusal import rejection_refusal, spacing_refusal
from ats_pipelines.migration.rollback import delete_batch_rows
from ats_pipelines.migration.sink import DatabaseSink, ProgressFn
from ats_pipelines.migration.verify import reset_keys, verify_file

log = logging.getLogger(__name__)
# a Rust panic inside polars/pyarrow surfaces as a BaseException; it must fail one file only
FILE_ERRORS: tuple[type[BaseException], ...] = (Exception, PanicException)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class FileOutcome:
    """What happened to one file in this run. ``status`` is the ledger status, or
    'skipped' (already verified), 'busy' (another worker has it), 'dry_run', 'error'."""

    file: DiscoveredFile
    status: str
    message: str = ""
    batch_id: int | None = None
    ledger_row: dict[str, Any] | None = None
    stats: SourceStats | None = None


class FileMigrator:
    """Migrates files over one connection (a worker)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        config: MigrationConfig,
        *,
        progress: ProgressFn | None = None,
        archive_dir: Path | None = None,
    ) -> None:
        self.conn = conn
        self.config = config
        self.progress = progress
        self.archive_dir = archive_dir

    async def migrate(self, file: DiscoveredFile) -> FileOutcome:
        checksum = await asyncio.to_thread(file_checksum, file.path)
        row = await ledger.claim(self.conn, file, checksum)
        batch_id = row["batch_id"]
        if row["status"] in ledger.DONE:
            return await self._already_done(file, row)
        if not await ledger.try_lock(self.conn, batch_id):
            return FileOutcome(file, "busy", "another worker is migrating this file", batch_id)
        try:
            row = await ledger.fetch(self.conn, batch_id)
            assert row is not None
            if row["status"] in ledger.DONE:
                return await self._already_done(file, row)
            if row["attempts"] > 0:
                # left by a killed or failed run, or reopened by a rollback: whatever carries
                # this batch id goes first, so the load below starts from nothing
                rows, quarantined = await delete_batch_rows(
                    self.conn, batch_id, file.dataset, file.exchange, file.symbol
                )
                log.info(
                    "event=migration_recover file=%s batch=%d previous_status=%s "
                    "rows_deleted=%d quarantine_deleted=%d",
                    file.relative,
                    batch_id,
                    row["status"],
                    rows,
                    quarantined,
                )
            return await self._load_and_verify(file, batch_id, checksum)
        finally:
            await ledger.unlock(self.conn, batch_id)

    async def _already_done(self, file: DiscoveredFile, row: asyncpg.Record) -> FileOutcome:
        batch_id = row["batch_id"]
        if self.archive_dir is not None and row["status"] == "verified":
            return await self._archive(file, batch_id, row["file_checksum"])
        return FileOutcome(
            file, "skipped", f"already {row['status']}", batch_id, ledger.as_dict(row)
        )

    async def _load_and_verify(
        self, file: DiscoveredFile, batch_id: int, checksum: str
    ) -> FileOutcome:
        spec = SPECS[file.dataset]
        await ledger.mark_loading(self.conn, batch_id, file.assumptions)
        log.info(
            "event=migration_load_start file=%s batch=%d dataset=%s symbol=%s tf=%s",
            file.relative,
            batch_id,
            file.dataset,
            file.symbol,
            file.timeframe,
        )
        started = time.perf_counter()
        try:
            stats, sink = await self._load(file, batch_id)
        except FILE_ERRORS as exc:  # any failure fails this file only
            reason = f"load failed: {type(exc).__name__}: {exc}"
            return await self._fail(file, batch_id, reason)
        refused = spacing_refusal(file, stats.spacing) or rejection_refusal(
            stats.rows_read, stats.rows_quarantined, self.config
        )
        if refused is not None:
            return await self._fail(file, batch_id, refused)
        t0 = time.perf_counter()
        try:
            result = await verify_file(
                self.conn, file, spec, batch_id, stats, sink.inserted, sink.existing
            )
        except FILE_ERRORS as exc:  # any failure fails this file only
            return await self._fail(
                file, batch_id, f"verification failed: {type(exc).__name__}: {exc}"
            )
        verify_s = time.perf_counter() - t0
        if not result.ok:
            return await self._fail(
                file,
                batch_id,
                "verification failed: " + "; ".join(result.reasons),
                verification=result.details,
                loaded_checksum=result.loaded.checksum,
            )
        await ledger.mark_verified(
            self.conn, batch_id, result.loaded.checksum, result.details, verify_s
        )
        log.info(
            "event=migration_verified file=%s batch=%d rows_read=%d inserted=%d "
            "existing=%d duplicate=%d quarantined=%d seconds=%.3f",
            file.relative,
            batch_id,
            stats.rows_read,
            sink.inserted,
            sink.existing,
            stats.rows_duplicate,
            stats.rows_quarantined,
            time.perf_counter() - started,
        )
        if self.archive_dir is not None:
            return await self._archive(file, batch_id, checksum)
        row = await ledger.fetch(self.conn, batch_id)
        assert row is not None
        return FileOutcome(
            file, "verified", "loaded and verified", batch_id, ledger.as_dict(row), stats
        )

    async def _load(self, file: DiscoveredFile, batch_id: int) -> tuple[SourceStats, DatabaseSink]:
        spec = SPECS[file.dataset]
        pipeline = SourcePipeline(file, self.config)
        await reset_keys(self.conn, spec)
        async with self.conn.transaction():
            sink = DatabaseSink(self.conn, file, batch_id, self.config, self.progress)
            try:
                async with self.conn.transaction():  # savepoint: undone if the file is unsorted
                    stats = await pipeline.run(sink)
            except Unsorted as exc:
                log.info(
                    "event=migration_unsorted file=%s detail=%r action=external_sort",
                    file.relative,
                    str(exc),
                )
                await reset_keys(self.conn, spec)
                sink = DatabaseSink(self.conn, file, batch_id, self.config, self.progress)
                stats = await pipeline.run(sink, external_sort=True)
            stats.add_time("write_s", sink.write_s)
            stats.timings["write_paths"] = dict(sink.paths)
            first, last = stats.digest.first_us, stats.digest.last_us
            await ledger.mark_loaded(
                self.conn,
                batch_id,
                ledger.LoadStats(
                    rows_read=stats.rows_read,
                    rows_accepted=stats.rows_accepted,
                    rows_quarantined=stats.rows_quarantined,
                    rows_duplicate=stats.rows_duplicate,
                    rows_inserted=sink.inserted,
                    rows_existing=sink.existing,
                    first_ts=_dt(first),
                    last_ts=_dt(last),
                    source_checksum=stats.digest.checksum,
                    assumptions=stats.assumptions,
                    timings=stats.timings,
                ),
            )
        return stats, sink

    async def _fail(
        self,
        file: DiscoveredFile,
        batch_id: int,
        reason: str,
        *,
        verification: dict[str, Any] | None = None,
        loaded_checksum: str | None = None,
    ) -> FileOutcome:
        async with self.conn.transaction():
            rows, _ = await delete_batch_rows(
                self.conn, batch_id, file.dataset, file.exchange, file.symbol
            )
            await ledger.mark_failed(
                self.conn,
                batch_id,
                reason,
                verification=verification,
                loaded_checksum=loaded_checksum,
            )
        log.warning(
            "event=migration_failed file=%s batch=%d rows_removed=%d reason=%r",
            file.relative,
            batch_id,
            rows,
            reason,
        )
        row = await ledger.fetch(self.conn, batch_id)
        return FileOutcome(file, "failed", reason, batch_id, ledger.as_dict(row) if row else None)

    async def _archive(self, file: DiscoveredFile, batch_id: int, checksum: str) -> FileOutcome:
        assert self.archive_dir is not None
        try:
            target = archive_target(self.archive_dir, file.relative, batch_id)
            moved = await asyncio.to_thread(move_to_archive, file.path, target, checksum)
        except (ArchiveError, OSError) as exc:
            row = await ledger.fetch(self.conn, batch_id)
            return FileOutcome(
                file,
                "verified",
                f"verified; not archived: {exc}",
                batch_id,
                ledger.as_dict(row) if row else None,
            )
        await ledger.mark_archived(self.conn, batch_id, str(moved))
        log.info("event=migration_archived file=%s batch=%d to=%s", file.relative, batch_id, moved)
        row = await ledger.fetch(self.conn, batch_id)
        return FileOutcome(
            file,
            "archived",
            f"verified and archived to {moved}",
            batch_id,
            ledger.as_dict(row) if row else None,
        )


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)
