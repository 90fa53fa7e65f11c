"""External sort for files that are not sorted by time, in bounded memory.

Validated rows are appended to a scratch Parquet file with their arrival number; DuckDB sorts
it by (ts, arrival) within ``memory_limit``, spilling to disk, and the sorted file is streamed
back in chunks. Arrival order breaks ties, so the deduper's "last wins" still means the row
that came later in the source file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from ats_pipelines.migration.normalise import TS

SEQ = "_seq"


class SpillSorter:
    def __init__(self, memory_limit: str, workdir: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ats-migrate-spill-", dir=workdir))
        self.memory_limit = memory_limit
        self.raw = self.dir / "raw.parquet"
        self.sorted = self.dir / "sorted.parquet"
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        table = frame.with_columns(
            pl.int_range(self.rows, self.rows + frame.height, dtype=pl.Int64).alias(SEQ)
        ).to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.raw, table.schema, compression="zstd")
        self.writer.write_table(table)
        self.rows += frame.height

    def sorted_chunks(self, chunk_rows: int) -> Iterator[pl.DataFrame]:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        con = duckdb.connect(
            config={
                "memory_limit": self.memory_limit,
                "temp_directory": str(self.dir / "duckdb"),
                "threads": 2,
            }
        )
        try:
            # DuckDB's COPY takes no parameters; the paths are our own mkdtemp paths, quoted
            sql = (
                f"COPY (SELECT * FROM read_parquet({_literal(self.raw)}) "  # noqa: S608
                f"ORDER BY {TS}, {SEQ}) TO {_literal(self.sorted)} "
                f"(FORMAT parquet, ROW_GROUP_SIZE {int(chunk_rows)})"
            )
            con.execute(sql)
        finally:
            con.close()
        self.raw.unlink()
        pf = pq.ParquetFile(self.sorted)
        try:
            for batch in pf.iter_batches(batch_size=chunk_rows):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame.drop(SEQ)
        finally:
            pf.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _literal(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"
