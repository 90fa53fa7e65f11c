"""Reading cache files in bounded-memory chunks of Arrow rows.

Parquet is read row group by row group (``iter_batches``), Feather/Arrow IPC record batch by
record batch from a memory map, so a multi-GB file needs memory for one chunk at a time.
JSON has no streaming parser in the standard library: it is parsed whole, up to
``json_max_bytes`` (uncompressed), and refused beyond that with the limit named.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

# freqtrade's positional JSON layouts
JSON_OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")
JSON_TRADES_COLUMNS = ("timestamp", "id", "type", "side", "price", "amount", "cost")


class CorruptFileError(ValueError):
    """The file cannot be read as its format; the message names the file and the cause."""


@dataclass
class SourceReader:
    """A file opened for chunked reading; ``num_rows`` is known up front where cheap."""

    path: Path
    fmt: str
    schema: pa.Schema
    num_rows: int | None
    index_columns: tuple[str, ...]
    _chunks: Iterator[pa.Table]

    def chunks(self) -> Iterator[pa.Table]:
        try:
            yield from self._chunks
        except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(f"{self.path}: unreadable {self.fmt} data: {exc}") from exc


def _pandas_index(schema: pa.Schema) -> tuple[str, ...]:
    meta = schema.pandas_metadata or {}
    return tuple(c for c in meta.get("index_columns", []) if isinstance(c, str))


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Batches of whatever size → tables of about ``rows`` rows (at most ``rows`` + one batch)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            table = pa.Table.from_batches(pending)
            pending, count = [], 0
            for start in range(0, table.num_rows, rows):
                yield table.slice(start, rows)
    if pending:
        yield pa.Table.from_batches(pending)


def open_source(
    path: Path, fmt: str, dataset: str, *, chunk_rows: int, json_max_bytes: int
) -> SourceReader:
    """Open ``path``; a file that cannot even be opened raises :class:`CorruptFileError`."""
    try:
        if fmt == "parquet":
            return _open_parquet(path, chunk_rows)
        if fmt == "feather":
            return _open_feather(path, chunk_rows)
        if fmt in ("json", "json.gz"):
            return _open_json(path, fmt, dataset, chunk_rows, json_max_bytes)
    except CorruptFileError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(f"{path}: cannot open as {fmt}: {exc}") from exc
    raise CorruptFileError(f"{path}: unsupported format {fmt}")


def _open_parquet(path: Path, chunk_rows: int) -> SourceReader:
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow

    def chunks() -> Iterator[pa.Table]:
        try:
            for batch in pf.iter_batches(batch_size=chunk_rows):
                yield pa.Table.from_batches([batch])
        finally:
            pf.close()

    return SourceReader(
        path, "parquet", schema, pf.metadata.num_rows, _pandas_index(schema), chunks()
    )


def _open_feather(path: Path, chunk_rows: int) -> SourceReader:
    with path.open("rb") as fh:
        magic = fh.read(6)
    if magic == b"ARROW1":
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_file(source)
        n = reader.num_record_batches
        total = sum(reader.get_batch(i).num_rows for i in range(n))

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for i in range(n):
                    yield reader.get_batch(i)
            finally:
                source.close()

        return SourceReader(
            path,
            "feather",
            reader.schema,
            total,
            _pandas_index(reader.schema),
            _rechunk(batches(), chunk_rows),
        )
    if magic.startswith(b"FEA1"):
        # Feather v1 has no record batches to stream; these files predate 2019 and are small.
        table = feather.read_table(str(path))
        return SourceReader(
            path,
            "feather",
            table.schema,
            table.num_rows,
            (),
            _rechunk(iter(table.to_batches()), chunk_rows),
        )
    # an Arrow IPC *stream* (no footer) is also written with .arrow/.feather names
    stream = pa.ipc.open_stream(pa.memory_map(str(path)))
    return SourceReader(
        path,
        "feather",
        stream.schema,
        None,
        _pandas_index(stream.schema),
        _rechunk(iter(stream), chunk_rows),
    )


def _read_limited(path: Path, fmt: str, limit: int) -> bytes:
    opener = gzip.open if fmt == "json.gz" else open
    with opener(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise CorruptFileError(
            f"{path}: JSON larger than json_max_bytes={limit} (JSON is parsed whole; convert "
            "it to Parquet or raise the limit)"
        )
    return data


def _open_json(path: Path, fmt: str, dataset: str, chunk_rows: int, limit: int) -> SourceReader:
    try:
        data = json.loads(_read_limited(path, fmt, limit))
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{path}: invalid JSON: {exc}") from exc
    table = json_to_table(data, dataset, origin=str(path))
    return SourceReader(
        path, fmt, table.schema, table.num_rows, (), _rechunk(iter(table.to_batches()), chunk_rows)
    )


def json_to_table(data: Any, dataset: str, *, origin: str) -> pa.Table:
    """freqtrade's list of lists, a list of records, or pandas' split/columns layouts."""
    if isinstance(data, dict) and "columns" in data and "data" in data:
        return _rows_to_table(data["data"], tuple(map(str, data["columns"])), origin)
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        # pandas' default orient="columns": {column: {row label: value}}
        return pa.table({str(k): list(v.values()) for k, v in data.items()})
    if not isinstance(data, list):
        raise CorruptFileError(f"{origin}: expected a JSON list of rows")
    if not data:
        names = JSON_TRADES_COLUMNS if dataset == "trades" else JSON_OHLCV_COLUMNS
        return pa.table({n: pa.array([], pa.float64()) for n in names})
    if isinstance(data[0], dict):
        return pa.Table.from_pylist(data)
    names = JSON_TRADES_COLUMNS if dataset == "trades" else JSON_OHLCV_COLUMNS
    width = len(data[0])
    if width < len(names) and not (dataset != "trades" and width >= 5):
        raise CorruptFileError(f"{origin}: rows have {width} fields, expected {len(names)}")
    return _rows_to_table(
        data,
        names[:width]
        if width <= len(names)
        else (*names, *(f"extra_{i}" for i in range(width - len(names)))),
        origin,
    )


def _rows_to_table(rows: list[Any], names: tuple[str, ...], origin: str) -> pa.Table:
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise CorruptFileError(f"{origin}: row {i} has not {width} fields: {row!r:.80}")
    columns = list(zip(*rows, strict=True)) if rows else [()] * width
    try:
        return pa.table({n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CorruptFileError(f"{origin}: mixed value types in a column: {exc}") from exc
