"""The source side of one file: read → normalise → validate → de-duplicate, chunk by chunk.

Shared by the load (whose sink writes to the database) and the dry run (whose sink only
counts). CPU work runs in a worker thread one chunk ahead of the sink, so reading and
normalising the next chunk overlaps the database's work on the current one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import polars as pl

from ats_pipelines.migration.checksum import Digest, frame_digest
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS, DatasetSpec
from ats_pipelines.migration.dedupe import SortedStream
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.grid import GridTracker, SpacingTracker
from ats_pipelines.migration.normalise import TS, ColumnPlan
from ats_pipelines.migration.readers import open_source
from ats_pipelines.migration.spill import SpillSorter
from ats_pipelines.migration.validation import Checked, FileValidator

T = TypeVar("T")


class Sink(Protocol):
    async def rejected(self, frame: pl.DataFrame) -> None: ...

    async def accept(self, frame: pl.DataFrame, digest: Digest) -> None: ...


@dataclass
class SourceStats:
    """What the source held, after normalisation, validation and de-duplication."""

    rows_read: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_unique: int = 0
    digest: Digest = field(default_factory=Digest)
    grid: GridTracker | None = None
    spacing: SpacingTracker = field(default_factory=SpacingTracker)  # before validation
    assumptions: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    sorted_externally: bool = False

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - self.rows_quarantined

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = round(self.timings.get(key, 0.0) + seconds, 6)


@dataclass
class _Piece:
    checked: Checked
    digest: Digest


class SourcePipeline:
    """One pass over one file; ``external_sort`` routes rows through :class:`SpillSorter`."""

    def __init__(self, file: DiscoveredFile, config: MigrationConfig) -> None:
        self.file = file
        self.config = config
        self.spec: DatasetSpec = SPECS[file.dataset]
        self.validator = FileValidator(file)
        self.stats = SourceStats()

    def _normalised(self) -> Iterator[pl.DataFrame]:
        started = time.perf_counter()
        reader = open_source(
            self.file.path,
            self.file.fmt,
            self.file.dataset,
            chunk_rows=self.config.chunk_rows,
            json_max_bytes=self.config.json_max_bytes,
        )
        plan = ColumnPlan.build(
            reader.schema,
            self.file.dataset,
            reader.index_columns,
            self.config.naive_timezone,
            str(self.file.path),
        )
        self.stats.add_time("open_s", time.perf_counter() - started)
        offset = 0
        for chunk in reader.chunks():
            t0 = time.perf_counter()
            frame = self.validator.with_location(plan.apply(chunk, offset))
            self.stats.spacing.push(frame[TS].drop_nulls().dt.epoch("us").to_numpy())
            offset += chunk.num_rows
            self.stats.rows_read += chunk.num_rows
            self.stats.add_time("normalise_s", time.perf_counter() - t0)
            self.stats.assumptions.update(plan.assumptions)
            yield frame
        self.stats.assumptions.update(plan.assumptions)

    def _pieces(self, external_sort: bool) -> Iterator[_Piece]:
        """All CPU work of the file, run in a worker thread one piece ahead of the sink."""
        stream = SortedStream(self._check)
        if not external_sort:
            for frame in self._normalised():
                yield self._piece(stream.push(frame))
        else:
            sorter = SpillSorter(self.config.spill_memory_limit)
            try:
                for frame in self._normalised():
                    sorter.add(frame)
                self.stats.assumptions["sorted"] = "externally (file was not in time order)"
                for frame in sorter.sorted_chunks(self.config.chunk_rows):
                    yield self._piece(stream.push(frame))
            finally:
                sorter.close()
        last = stream.finish()
        if last is not None:
            yield self._piece(last)

    def _check(self, frame: pl.DataFrame) -> Checked:
        t0 = time.perf_counter()
        checked = self.validator.check(frame)
        self.stats.add_time("validate_s", time.perf_counter() - t0)
        return checked

    def _piece(self, checked: Checked) -> _Piece:
        t0 = time.perf_counter()
        accepted = checked.accepted
        digest = Digest()
        if not accepted.is_empty():
            digest = frame_digest(accepted, self.spec.checksum, self.spec.text)
            if self.stats.grid is not None:
                self.stats.grid.push(accepted[TS].dt.epoch("us").to_numpy())
        self.stats.add_time("checksum_s", time.perf_counter() - t0)
        return _Piece(checked, digest)

    async def run(self, sink: Sink, *, external_sort: bool = False) -> SourceStats:
        self.stats = SourceStats()
        if self.file.timeframe and self.file.dataset != "trades":
            self.stats.grid = GridTracker(self.file.timeframe)
        async with aclosing(_ahead(self._pieces(external_sort))) as pieces:
            async for piece in pieces:
                checked = piece.checked
                self.stats.rows_quarantined += checked.rows_rejected
                self.stats.rows_duplicate += checked.duplicates
                if not checked.quarantine.is_empty():
                    await sink.rejected(checked.quarantine)
                if not checked.accepted.is_empty():
                    self.stats.digest = self.stats.digest + piece.digest
                    self.stats.rows_unique += checked.accepted.height
                    await sink.accept(checked.accepted, piece.digest)
        self.stats.sorted_externally = external_sort
        return self.stats


async def _ahead(items: Iterator[T]) -> AsyncGenerator[T, None]:
    """Iterate a blocking iterator in a thread, one item ahead of the consumer."""
    done = object()
    pending = asyncio.ensure_future(asyncio.to_thread(next, items, done))
    try:
        while True:
            item = await pending
            if item is done:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next, items, done))
            yield cast(T, item)
    finally:
        # never leave the generator running in a thread when the consumer stops early
        if not pending.done():
            await asyncio.gather(pending, return_exceptions=True)
