"""A migration run over a root: discover, migrate files with N workers, report.

Each worker has its own connection and takes files from a shared queue; a failing file fails
alone. A dry run reads, normalises, validates and de-duplicates every file exactly as a real
run does, and consults the ledger read-only, but writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ats_pipelines.db.connect import DatabaseUnavailable, connect, connection
from ats_pipelines.migration import ledger
from ats_pipelines.migration.archive import file_checksum
from ats_pipelines.migration.checksum import Digest
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.dedupe import Unsorted
from ats_pipelines.migration.discovery import DiscoveredFile, Discovery, UnmatchedFile, discover
from ats_pipelines.migration.loader import FILE_ERRORS, FileMigrator, FileOutcome
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.pipeline import SourcePipeline

log = logging.getLogger(__name__)


class MigrationSetupError(RuntimeError):
    """The database lacks the migration tables; the message says which command fixes it."""


class RunProgress(Protocol):
    def start(self, files: list[DiscoveredFile], estimates: dict[Path, int]) -> None: ...

    def rows(self, file: DiscoveredFile, rows: int) -> None: ...

    def file_done(self, outcome: FileOutcome) -> None: ...


@dataclass
class RunResult:
    root: Path
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[FileOutcome] = field(default_factory=list)
    unmatched: list[UnmatchedFile] = field(default_factory=list)
    seconds: float = 0.0
    report_paths: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.status for o in self.outcomes))

    @property
    def rows_read(self) -> int:
        return sum(
            o.stats.rows_read
            if o.stats is not None
            else int((o.ledger_row or {}).get("rows_read") or 0)
            for o in self.outcomes
            if o.status != "skipped"
        )

    @property
    def rows_inserted(self) -> int:
        return sum(
            int((o.ledger_row or {}).get("rows_inserted") or 0)
            for o in self.outcomes
            if o.status in ("verified", "archived")
        )

    @property
    def ok(self) -> bool:
        return not any(o.status in ("failed", "error") for o in self.outcomes)


async def ensure_schema(conn: asyncpg.Connection) -> None:
    present = await conn.fetchval(
        "SELECT to_regclass('ops.migration_unmatched') IS NOT NULL AND EXISTS (SELECT 1 FROM "
        "information_schema.columns WHERE table_schema = 'ops' AND table_name = "
        "'migration_ledger' AND column_name = 'rows_existing')"
    )
    if not present:
        raise MigrationSetupError(
            "the migration tables are missing or outdated: run `ats db migrate` "
            "(applies sql/030_migration.sql)"
        )


def estimate_rows(file: DiscoveredFile) -> int:
    """Row count from file metadata where that is cheap (Parquet, Feather); 0 otherwise."""
    try:
        if file.fmt == "parquet":
            return pq.ParquetFile(file.path).metadata.num_rows
        if file.fmt == "feather":
            with pa.memory_map(str(file.path)) as source:
                reader = pa.ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError):
        return 0
    return 0


class _CountingSink:
    def __init__(self, file: DiscoveredFile, progress: RunProgress | None) -> None:
        self.file, self.progress = file, progress

    async def rejected(self, frame: pl.DataFrame) -> None:
        return None

    async def accept(self, frame: pl.DataFrame, digest: Digest) -> None:
        if self.progress is not None:
            self.progress.rows(self.file, frame.height)


async def dry_run_file(
    conn: asyncpg.Connection | None,
    file: DiscoveredFile,
    config: MigrationConfig,
    progress: RunProgress | None,
) -> FileOutcome:
    checksum = await asyncio.to_thread(file_checksum, file.path)
    if conn is not None:
        row = await conn.fetchrow(
            "SELECT batch_id, status FROM ops.migration_ledger WHERE file_path = $1 AND "
            "file_checksum = $2",
            str(file.path),
            checksum,
        )
        if row is not None and row["status"] in ledger.DONE:
            return FileOutcome(
                file, "dry_run", f"would skip: already {row['status']}", row["batch_id"]
            )
    pipeline = SourcePipeline(file, config)
    try:
        try:
            stats = await pipeline.run(_CountingSink(file, progress))
        except Unsorted:
            stats = await pipeline.run(_CountingSink(file, None), external_sort=True)
    except FILE_ERRORS as exc:  # reported as a real run would fail the file
        return FileOutcome(file, "dry_run", f"would fail: {type(exc).__name__}: {exc}")
    return FileOutcome(
        file,
        "dry_run",
        f"would load {stats.rows_unique} rows ({stats.rows_read} read, "
        f"{stats.rows_quarantined} to quarantine, {stats.rows_duplicate} duplicates)",
        stats=stats,
    )


async def run_migration(
    database_url: str | None,
    root: Path,
    config: MigrationConfig,
    catalog: MarketCatalog,
    *,
    dry_run: bool = False,
    workers: int | None = None,
    archive_dir: Path | None = None,
    progress: RunProgress | None = None,
) -> RunResult:
    """Migrate every file under ``root``; ``database_url`` may be None only for a dry run."""
    started = time.perf_counter()
    root = await asyncio.to_thread(root.resolve)
    result = RunResult(root, dry_run, datetime.now(UTC))
    found: Discovery = await asyncio.to_thread(discover, root, config, catalog)
    result.unmatched = found.unmatched
    if progress is not None:
        estimates = await asyncio.to_thread(lambda: {f.path: estimate_rows(f) for f in found.files})
        progress.start(found.files, estimates)
    if database_url is None and not dry_run:
        raise MigrationSetupError("a database URL is needed unless --dry-run")
    queue: asyncio.Queue[DiscoveredFile] = asyncio.Queue()
    for file in found.files:
        queue.put_nowait(file)
    if database_url is not None and not dry_run:
        async with connection(database_url) as conn:
            await ensure_schema(conn)
            await ledger.record_unmatched(conn, str(result.root), found.unmatched)
    n = max(1, min(workers or config.workers, len(found.files) or 1))
    await asyncio.gather(
        *(
            _worker(database_url, queue, config, dry_run, archive_dir, progress, result)
            for _ in range(n)
        )
    )
    order = {f.path: i for i, f in enumerate(found.files)}
    result.outcomes.sort(key=lambda o: order[o.file.path])
    result.finished_at = datetime.now(UTC)
    result.seconds = time.perf_counter() - started
    log.info(
        "event=migration_run_done root=%s dry_run=%s files=%d unmatched=%d counts=%s seconds=%.2f",
        result.root,
        dry_run,
        len(found.files),
        len(found.unmatched),
        result.counts(),
        result.seconds,
    )
    return result


async def _worker(
    database_url: str | None,
    queue: asyncio.Queue[DiscoveredFile],
    config: MigrationConfig,
    dry_run: bool,
    archive_dir: Path | None,
    progress: RunProgress | None,
    result: RunResult,
) -> None:
    conn: asyncpg.Connection | None = None
    try:
        while not queue.empty():
            file = queue.get_nowait()
            if database_url is not None and (conn is None or conn.is_closed()):
                conn = await _connect(database_url, required=not dry_run)
            try:
                if dry_run:
                    outcome = await dry_run_file(conn, file, config, progress)
                else:
                    assert conn is not None
                    migrator = FileMigrator(
                        conn,
                        config,
                        archive_dir=archive_dir,
                        progress=progress.rows if progress else None,
                    )
                    outcome = await migrator.migrate(file)
            except FILE_ERRORS as exc:  # e.g. the connection died mid-file
                log.error("event=migration_error file=%s error=%r", file.relative, str(exc))
                outcome = FileOutcome(file, "error", f"{type(exc).__name__}: {exc}")
            result.outcomes.append(outcome)
            if progress is not None:
                progress.file_done(outcome)
    finally:
        if conn is not None:
            await conn.close()


async def _connect(url: str, *, required: bool) -> asyncpg.Connection | None:
    try:
        return await connect(url)
    except DatabaseUnavailable:
        if required:
            raise
        log.warning("event=migration_dry_run_without_ledger reason=database_unavailable")
        return None
