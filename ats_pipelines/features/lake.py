"""The Parquet lake: exported market data, features and labels, one file per partition.

Layout, one file per dataset, exchange, symbol and UTC day (of the bar's open time)::

    <root>/candles/<timeframe>/<exchange>/<symbol slug>/<YYYY-MM-DD>.parquet
    <root>/order_book_1m/<exchange>/<symbol slug>/<YYYY-MM-DD>.parquet
    <root>/features/<family>/<exchange>/<symbol slug>/<YYYY-MM-DD>.parquet
    <root>/labels/<name>/<exchange>/<symbol slug>/<YYYY-MM-DD>.parquet

Directory names carry no ``key=value`` (hive) parts: the files hold ``exchange`` and ``symbol``
themselves, and a hive ``symbol`` column would clash with them. The slug follows freqtrade's
file names (``XRP/USDT:USDT`` -> ``XRP_USDT_USDT``); the real symbol is in every row and in
the file's metadata, which :func:`write_if_changed` checks so two symbols never share a file.

Files are written deterministically (fixed schema, row order and writer settings), so the
same rows give the same bytes: a re-run compares bytes and leaves an unchanged file alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SYMBOL_KEY = "ats.symbol"
# Next to a dataset's folder (features/features_1m.dataset.json), not in it: readers given the
# folder (polars, pyarrow, DuckDB globs) then see Parquet files only.
DATASET_MARKER_SUFFIX = ".dataset.json"
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
# Fixed writer settings: part of the file format's determinism (see module docstring).
_WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["exchange", "symbol", "timeframe"],
    "write_statistics": True,
    "row_group_size": 1 << 20,
    "data_page_version": "1.0",
}


class LakeError(RuntimeError):
    """A lake file cannot be read or written as asked; the message names the file."""


def symbol_slug(symbol: str) -> str:
    """File-system name of a ccxt symbol (freqtrade's convention)."""
    return re.sub(r"[/:.@$+ ]", "_", symbol)


@dataclass(frozen=True)
class WriteOutcome:
    path: Path
    rows: int
    sha256: str
    written: bool  # False: the file already held exactly these bytes


@dataclass(frozen=True)
class Lake:
    """A lake rooted at ``root`` (``Settings.lake_dir``)."""

    root: Path

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    def series_dir(self, dataset: str, exchange: str, symbol: str) -> Path:
        return self.root / dataset / exchange / symbol_slug(symbol)

    def partition_path(self, dataset: str, exchange: str, symbol: str, day: date) -> Path:
        return self.series_dir(dataset, exchange, symbol) / f"{day.isoformat()}.parquet"

    def days(self, dataset: str, exchange: str, symbol: str) -> list[date]:
        """The days a series has files for, in order."""
        folder = self.series_dir(dataset, exchange, symbol)
        if not folder.is_dir():
            return []
        found = (_DAY_FILE.match(p.name) for p in folder.iterdir())
        return sorted(date.fromisoformat(m[1]) for m in found if m)

    def files(self, dataset: str, exchange: str, symbol: str, days: Iterable[date]) -> list[Path]:
        """Existing files of ``days`` (missing days skipped), in day order."""
        paths = (self.partition_path(dataset, exchange, symbol, d) for d in sorted(set(days)))
        return [p for p in paths if p.is_file()]

    def glob(self, dataset: str) -> str:
        """A DuckDB/pyarrow glob over every file of ``dataset``."""
        return str(self.root / dataset / "*" / "*" / "*.parquet")


def table_bytes(table: pa.Table, metadata: Mapping[str, str] | None = None) -> bytes:
    """The Parquet bytes of ``table`` with the lake's writer settings."""
    if metadata:
        merged = {
            **(table.schema.metadata or {}),
            **{k.encode(): v.encode() for k, v in metadata.items()},
        }
        table = table.replace_schema_metadata(merged)
    sink = io.BytesIO()
    pq.write_table(table, sink, **_WRITE_OPTIONS)  # type: ignore[arg-type]
    return sink.getvalue()


def file_metadata(path: Path) -> dict[str, str]:
    """The ``ats.*`` key-value metadata of a lake file (empty if it has none)."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise LakeError(f"{path}: not a readable Parquet file ({exc})") from exc
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"ats.")}


def write_if_changed(path: Path, table: pa.Table, metadata: Mapping[str, str]) -> WriteOutcome:
    """Write ``table`` to ``path`` atomically unless the file already holds the same bytes."""
    data = table_bytes(table, metadata)
    digest = hashlib.sha256(data).hexdigest()
    if path.is_file():
        existing = file_metadata(path).get(SYMBOL_KEY)
        wanted = metadata.get(SYMBOL_KEY)
        if existing and wanted and existing != wanted:
            raise LakeError(
                f"{path}: holds {existing!r}, refusing to overwrite it with "
                f"{wanted!r} (their file names collide)"
            )
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return WriteOutcome(path, table.num_rows, digest, written=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return WriteOutcome(path, table.num_rows, digest, written=True)


def remove(path: Path) -> bool:
    """Delete a partition file whose source rows are gone; True if there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_table(paths: list[Path], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate lake files (in the given order); an empty table of ``schema`` if none."""
    if not paths:
        if schema is None:
            raise LakeError("no files to read and no schema to build an empty table from")
        return schema.empty_table()
    try:
        tables = [pq.read_table(p) for p in paths]
    except (OSError, pa.ArrowInvalid) as exc:
        raise LakeError(f"reading {len(paths)} lake file(s) from {paths[0].parent}: {exc}") from exc
    table = pa.concat_tables(tables, promote_options="default")
    return table.replace_schema_metadata(None)


def _marker(folder: Path) -> Path:
    return folder.with_name(folder.name + DATASET_MARKER_SUFFIX)


def mark_unique(folder: Path, key: Iterable[str]) -> None:
    """Record that no two rows of the dataset under ``folder`` share ``key`` (the offline store
    then skips its duplicate check). True of every lake dataset: one file per series and day,
    one row per bar in it."""
    marker = _marker(folder)
    text = json.dumps({"unique_key": list(key)}, sort_keys=True)
    if not marker.is_file() or marker.read_text() != text:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(text)


def unique_key(folder: Path) -> list[str] | None:
    """The key recorded by :func:`mark_unique`, if any."""
    try:
        return list(json.loads(_marker(folder).read_text())["unique_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
