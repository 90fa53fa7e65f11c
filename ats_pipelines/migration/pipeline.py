"""The source side of one file: read → normalise → validate → de-duplicate, chunk by chunk.

Shared by the load (whose sink writes to the database) and the dry run (whose sink only
counts). CPU work runs in a worker thread one chunk ahead of the sink, so reading and
normalising the next chunk overlaps the database's work on the current one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import polars as pl

from ats_pipelines.migration import validation
from ats_pipelines.migration.checksum import Digest, frame_digest
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.datasets import SPECS, DatasetSpec
from ats_pipelines.migration.dedupe import StreamDeduper
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.grid import GridTracker
from ats_pipelines.migration.normalise import TS, ColumnPlan
from ats_pipelines.migration.readers import open_source
from ats_pipelines.migration.spill import SpillSorter

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
    assumptions: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sorted_externally: bool = False

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - self.rows_quarantined

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = round(self.timings.get(key, 0.0) + seconds, 6)


@dataclass
class _Prepared:
    accepted: pl.DataFrame
    rejected: pl.DataFrame
    rows: int


class SourcePipeline:
    """One pass over one file; ``external_sort`` routes rows through :class:`SpillSorter`."""

    def __init__(self, file: DiscoveredFile, config: MigrationConfig) -> None:
        self.file = file
        self.config = config
        self.spec: DatasetSpec = SPECS[file.dataset]
        self.stats = SourceStats()

    def _prepared(self) -> Iterator[_Prepared]:
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
        offset = 0
        self.stats.add_time("open_s", time.perf_counter() - started)
        for chunk in reader.chunks():
            t0 = time.perf_counter()
            frame = plan.apply(chunk, offset)
            offset += chunk.num_rows
            t1 = time.perf_counter()
            split = validation.split(frame, self.file.dataset)
            self.stats.add_time("normalise_s", t1 - t0)
            self.stats.add_time("validate_s", time.perf_counter() - t1)
            self.stats.assumptions.update(plan.assumptions)
            yield _Prepared(split.accepted, split.rejected, chunk.num_rows)
        self.stats.assumptions.update(plan.assumptions)

    async def run(self, sink: Sink, *, external_sort: bool = False) -> SourceStats:
        self.stats = SourceStats()
        if self.file.timeframe and self.file.dataset != "trades":
            self.stats.grid = GridTracker(self.file.timeframe)
        deduper = StreamDeduper(self.spec.key)
        sorter = SpillSorter(self.config.spill_memory_limit) if external_sort else None
        try:
            async with aclosing(_ahead(self._prepared())) as source:
                async for prepared in source:
                    await self._take(sink, prepared, deduper, sorter)
            if sorter is not None:
                self.stats.sorted_externally = True
                self.stats.assumptions["sorted"] = "externally (file was not in time order)"
                async with aclosing(_ahead(sorter.sorted_chunks(self.config.chunk_rows))) as back:
                    async for chunk in back:
                        await self._emit(sink, deduper.push(chunk))
            await self._emit(sink, deduper.finish())
        finally:
            if sorter is not None:
                sorter.close()
        self.stats.rows_duplicate = deduper.duplicates
        return self.stats

    async def _take(
        self, sink: Sink, prepared: _Prepared, deduper: StreamDeduper, sorter: SpillSorter | None
    ) -> None:
        self.stats.rows_read += prepared.rows
        self.stats.rows_quarantined += prepared.rejected.height
        if prepared.rejected.height:
            await sink.rejected(prepared.rejected)
        if sorter is not None:
            await asyncio.to_thread(sorter.add, prepared.accepted)
        else:
            await self._emit(sink, deduper.push(prepared.accepted))

    async def _emit(self, sink: Sink, frame: pl.DataFrame | None) -> None:
        if frame is None or frame.is_empty():
            return
        t0 = time.perf_counter()
        digest = await asyncio.to_thread(frame_digest, frame, self.spec.checksum, self.spec.text)
        if self.stats.grid is not None:
            self.stats.grid.push(frame[TS].dt.epoch("us").to_numpy())
        self.stats.add_time("checksum_s", time.perf_counter() - t0)
        self.stats.digest = self.stats.digest + digest
        self.stats.rows_unique += frame.height
        await sink.accept(frame, digest)


async def _ahead(items: Iterator[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterator in a thread, one item ahead of the consumer."""
    done = object()
    pending = asyncio.ensure_future(asyncio.to_thread(next, items, done))
    try:
        while True:
            item = await pending
            if item is done:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next, items, done))
            yield item
    finally:
        # never leave the generator running in a thread when the consumer stops early
        if not pending.done():
            await asyncio.gather(pending, return_exceptions=True)
