"""Vectorised encoder of PostgreSQL's binary COPY format from Arrow columns.

Encoding rows one by one in Python costs more than the server spends storing them, so rows are
encoded column-wise with numpy: rows are grouped by their "shape" (the byte length of every
variable-width value and the null pattern), and each group is laid out as one numpy structured
array whose memory *is* the COPY payload of those rows. Row order inside a COPY does not matter
to the server, so groups are emitted one after another.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_US = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
_PG_EPOCH_DAYS = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days

# PostgreSQL type name -> numpy big-endian dtype of fixed-width values.
_FIXED = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float4": ">f4",
    "float8": ">f8",
    "bool": "u1",
    "timestamptz": ">i8",
    "timestamp": ">i8",
    "date": ">i4",
}
_VARIABLE = {"text", "varchar", "bpchar", "name", "jsonb", "json"}
_ARRAYS = {
    "_float8": ("float8", 701, ">f8"),
    "_float4": ("float4", 700, ">f4"),
    "_int8": ("int8", 20, ">i8"),
    "_int4": ("int4", 23, ">i4"),
}


class EncodeError(ValueError):
    """A column cannot be encoded as its PostgreSQL type; the message names the column."""


@dataclass(frozen=True)
class PgColumn:
    name: str
    typname: str  # pg_type.typname, e.g. 'float8', 'timestamptz', '_float8'


def supported(typname: str) -> bool:
    return typname in _FIXED or typname in _VARIABLE or typname in _ARRAYS


@dataclass
class _Prepared:
    kind: str  # 'fixed' | 'var' | 'array'
    valid: np.ndarray  # bool per row
    values: np.ndarray | None = None  # fixed: values in target dtype
    dtype: str | None = None
    data: np.ndarray | None = None  # var/array: flat uint8 bytes or flat element values
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None  # bytes (var) or element count (array)
    prefix: bytes = b""
    elem_oid: int = 0


def _prepare(col: PgColumn, arr: pa.ChunkedArray | pa.Array) -> _Prepared:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    valid = _valid_mask(arr)
    t = col.typname
    if t in _FIXED:
        return _Prepared("fixed", valid, _fixed_values(col, arr), _FIXED[t])
    if t in _VARIABLE:
        if (
            t == "jsonb"
            and not pa.types.is_string(arr.type)
            and not pa.types.is_large_string(arr.type)
        ):
            arr = pa.array(
                [None if v is None else json.dumps(v) for v in arr.to_pylist()], pa.string()
            )
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            try:
                arr = pc.cast(arr, pa.string())
            except pa.ArrowInvalid as exc:
                raise EncodeError(f"column {col.name!r}: cannot encode {arr.type} as {t}") from exc
        arr = pc.cast(arr, pa.large_string())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        data_buf = arr.buffers()[2]
        data = (
            np.frombuffer(data_buf, dtype=np.uint8)
            if data_buf is not None
            else np.zeros(0, np.uint8)
        )
        prefix = b"\x01" if t == "jsonb" else b""
        return _Prepared(
            "var",
            valid,
            data=data,
            starts=offsets[:-1],
            lengths=np.diff(offsets).astype(np.int64),
            prefix=prefix,
        )
    if t in _ARRAYS:
        _, oid, edt = _ARRAYS[t]
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise EncodeError(
                f"column {col.name!r}: expected a list column for {t}, got {arr.type}"
            )
        arr = pc.cast(
            arr,
            pa.large_list(pa.float64() if edt.endswith("f8") or edt.endswith("f4") else pa.int64()),
        )
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        flat = arr.values
        if flat.null_count:
            raise EncodeError(f"column {col.name!r}: array elements must not be null")
        values = flat.to_numpy(zero_copy_only=False).astype(edt)
        return _Prepared(
            "array",
            valid,
            data=values,
            starts=offsets[:-1],
            lengths=np.diff(offsets).astype(np.int64),
            dtype=edt,
            elem_oid=oid,
        )
    raise EncodeError(f"column {col.name!r}: PostgreSQL type {t} is not supported by the encoder")


def _valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def check_timestamp(col: PgColumn, arrow_type: pa.DataType) -> None:
    """Timestamp columns must be Arrow timestamps, and time-zone aware for timestamptz."""
    if col.typname not in ("timestamptz", "timestamp"):
        return
    if not pa.types.is_timestamp(arrow_type):
        raise EncodeError(f"column {col.name!r}: expected a timestamp column, got {arrow_type}")
    if col.typname == "timestamptz" and arrow_type.tz is None:  # pyright: ignore[reportAttributeAccessIssue]
        raise EncodeError(
            f"column {col.name!r}: timestamp has no time zone; timestamps must be UTC-aware"
        )


def _fixed_values(col: PgColumn, arr: pa.Array) -> np.ndarray:
    t = col.typname
    if t in ("timestamptz", "timestamp"):
        check_timestamp(col, arr.type)
        us = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz)).cast(pa.int64())
        return (us.fill_null(0).to_numpy() - _PG_EPOCH_US).astype(">i8")
    if t == "date":
        days = pc.cast(arr, pa.date32()).cast(pa.int32()).fill_null(0).to_numpy()
        return (days - _PG_EPOCH_DAYS).astype(">i4")
    if t == "bool":
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype("u1")
    try:
        filled = arr.fill_null(0) if arr.null_count else arr
        values = filled.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EncodeError(f"column {col.name!r}: cannot encode {arr.type} as {t}") from exc
    if (
        t.startswith("int")
        and values.dtype.kind == "f"
        and (not np.all(np.isfinite(values)) or np.any(values != np.round(values)))
    ):
        raise EncodeError(f"column {col.name!r}: non-integer value for {t}")
    return values.astype(_FIXED[t])


def _shape_keys(prepared: Sequence[_Prepared], n: int) -> np.ndarray:
    """One int64 row per record: what decides its byte layout."""
    cols: list[np.ndarray] = []
    for p in prepared:
        if p.kind == "fixed":
            cols.append(p.valid.astype(np.int64))
        else:
            assert p.lengths is not None
            cols.append(np.where(p.valid, p.lengths, -1))
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.int64)


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=0, return_inverse=True)``, faster: the columns are small ranges
    (lengths, validity), so each row packs into one int64 and a 1-D unique sorts plain
    integers (``axis=0`` sorts a structured view: ~10x slower on a trades batch)."""
    lo = keys.min(axis=0)
    radix = keys.max(axis=0) - lo + 1
    if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    code = np.zeros(len(keys), np.int64)
    for j in range(keys.shape[1]):
        code = code * radix[j] + (keys[:, j] - lo[j])
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return keys[first], inverse.reshape(-1)


def _group_dtype(prepared: Sequence[_Prepared], key: np.ndarray) -> np.dtype:
    fields: list[tuple] = [("nfields", ">i2")]
    for i, (p, k) in enumerate(zip(prepared, key, strict=True)):
        fields.append((f"l{i}", ">i4"))
        if p.kind == "fixed":
            if k:
                fields.append((f"v{i}", p.dtype))
        elif p.kind == "var":
            if k >= 0:
                if p.prefix:
                    fields.append((f"p{i}", "u1"))
                if k > 0:
                    fields.append((f"v{i}", f"S{int(k)}"))
        else:
            if k >= 0:
                fields.append((f"h{i}", ">i4", (5,) if k > 0 else (3,)))
                if k > 0:
                    fields.append((f"v{i}", [("l", ">i4"), ("v", p.dtype)], (int(k),)))
    return np.dtype(fields)


SLICE_ROWS = 65_536


def encode_bytes(columns: Sequence[PgColumn], table: pa.Table) -> bytes:
    """The whole COPY payload of ``table`` as one buffer."""
    return b"".join(encode(columns, table))


def encode(columns: Sequence[PgColumn], table: pa.Table) -> Iterator[bytes]:
    """Binary COPY payload (header, rows, trailer) for ``table``'s columns named in ``columns``,
    in slices so a consumer can stream it while the rest is encoded."""
    yield HEADER
    for start in range(0, table.num_rows, SLICE_ROWS):
        yield from _encode_rows(columns, table.slice(start, SLICE_ROWS))
    yield TRAILER


def _encode_rows(columns: Sequence[PgColumn], table: pa.Table) -> Iterator[bytes]:
    n = table.num_rows
    prepared = [_prepare(c, table.column(c.name)) for c in columns]
    if n:
        keys = _shape_keys(prepared, n)
        if keys.shape[1] == 0 or bool((keys == keys[0]).all()):
            uniq, inverse = keys[:1], np.zeros(n, np.int64)
        elif n > 1:
            uniq, inverse = _unique_rows(keys)
        else:
            uniq, inverse = keys[:1], np.zeros(n, np.int64)
        order = np.argsort(inverse, kind="stable") if len(uniq) > 1 else None
        bounds = (
            np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
            if order is not None
            else np.array([0, n])
        )
        for g, key in enumerate(uniq):
            rows = order[bounds[g] : bounds[g + 1]] if order is not None else slice(None)
            yield _encode_group(prepared, key, rows, len(columns))


def _encode_group(prepared: Sequence[_Prepared], key: np.ndarray, rows, ncols: int) -> bytes:
    dtype = _group_dtype(prepared, key)
    first = prepared[0]
    count = len(first.valid[rows])
    out = np.empty(count, dtype=dtype)
    out["nfields"] = ncols
    for i, (p, k) in enumerate(zip(prepared, key, strict=True)):
        if p.kind == "fixed":
            if k:
                out[f"l{i}"] = np.dtype(p.dtype).itemsize
                assert p.values is not None
                out[f"v{i}"] = p.values[rows]
            else:
                out[f"l{i}"] = -1
        elif p.kind == "var":
            if k < 0:
                out[f"l{i}"] = -1
                continue
            out[f"l{i}"] = int(k) + len(p.prefix)
            if p.prefix:
                out[f"p{i}"] = p.prefix[0]
            if k > 0:
                assert p.starts is not None and p.data is not None
                idx = p.starts[rows][:, None] + np.arange(int(k))
                out[f"v{i}"] = p.data[idx].view(f"S{int(k)}").reshape(-1)
        else:
            if k < 0:
                out[f"l{i}"] = -1
                continue
            size = np.dtype(p.dtype).itemsize
            if k == 0:
                out[f"l{i}"] = 12
                out[f"h{i}"] = (0, 0, p.elem_oid)
                continue
            out[f"l{i}"] = 20 + int(k) * (4 + size)
            out[f"h{i}"] = (1, 0, p.elem_oid, int(k), 1)
            assert p.starts is not None and p.data is not None
            idx = p.starts[rows][:, None] + np.arange(int(k))
            out[f"v{i}"]["l"] = size
            out[f"v{i}"]["v"] = p.data[idx]
    return out.tobytes()
