"""Spill files: writer batches kept on local disk while the database is away.

One Arrow IPC file per batch, named by a sequence number so the directory listing is the replay
order; the target table and write options travel in the schema metadata. Files are written to
a temporary name and renamed, so a crash never leaves half a batch that looks whole. A file is
deleted only after its rows are committed; files left by a previous run are replayed first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)
_FIRST_SEQ = 10**12  # room below for batches prepended at shutdown
_WIDTH = 16


@dataclass
class Batch:
    """Rows for one table, with how to write them; ``meta`` is in-memory only (timings)."""

    table: str
    data: pa.Table
    dataset: str | None = None  # ops.quarantine: which dataset the rejected rows belong to
    on_conflict: str = "nothing"
    meta: list[Any] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.data.num_rows


class SpillStore:
    """The spill directory of one writer lane."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):  # a crash while writing: never renamed, drop
            stale.unlink()
        self._paths: dict[int, Path] = {int(p.stem): p for p in directory.glob("*.arrow")}
        self._next = (max(self._paths) + 1) if self._paths else _FIRST_SEQ
        self.rows = sum(self._rows_of(p) for p in self._paths.values())

    def files(self) -> list[Path]:
        """Spilled batches in replay order."""
        return [self._paths[seq] for seq in sorted(self._paths)]

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def _write(self, seq: int, batch: Batch) -> Path:
        meta = {
            b"table": batch.table.encode(),
            b"on_conflict": batch.on_conflict.encode(),
            b"dataset": (batch.dataset or "").encode(),
        }
        data = batch.data.replace_schema_metadata(meta)
        path = self.directory / f"{seq:0{_WIDTH}d}.arrow"
        tmp = path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, data.schema) as writer:
            writer.write_table(data)
        os.replace(tmp, path)
        self._paths[seq] = path
        self.rows += batch.rows
        return path

    def append(self, batch: Batch) -> Path:
        """Keep ``batch`` after everything already spilled."""
        path = self._write(self._next, batch)
        self._next += 1
        return path

    def prepend(self, batches: list[Batch]) -> None:
        """Keep ``batches`` (oldest first) before everything already spilled."""
        empty = not self._paths
        first = min(self._paths) if self._paths else self._next
        for i, batch in enumerate(batches):
            self._write(first - len(batches) + i, batch)
        if empty:
            self._next = first + 1

    @staticmethod
    def read(path: Path) -> Batch:
        with pa.memory_map(str(path), "r") as source:
            data = ipc.open_file(source).read_all()
        meta = data.schema.metadata or {}
        dataset = meta.get(b"dataset", b"").decode() or None
        return Batch(
            meta[b"table"].decode(),
            data.replace_schema_metadata(None),
            dataset,
            meta.get(b"on_conflict", b"nothing").decode(),
        )

    @staticmethod
    def _rows_of(path: Path) -> int:
        with pa.memory_map(str(path), "r") as source:
            return ipc.open_file(source).read_all().num_rows

    def remove(self, path: Path, rows: int) -> None:
        path.unlink(missing_ok=True)
        self._paths.pop(int(path.stem), None)
        self.rows = max(0, self.rows - rows)
