"""An order-independent content checksum, computed the same way from source rows and DB rows.

Each row's values are turned into 64-bit words (timestamps as epoch µs, floats as their IEEE
bits with NULL/NaN and -0.0 canonicalised, text as the first 8 bytes of its MD5), mixed into
one 64-bit row hash (splitmix64 finaliser), and the row hashes are summed modulo 2^64. A sum
is indifferent to row order yet, unlike a linear checksum of the values, catches values
swapped between rows. Database rows are streamed out with binary COPY in exactly these words
(the server computes the MD5 of text columns), so both sides run the same numpy code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
import polars as pl

from ats_pipelines.db.sqlid import quote_ident

MASK = (1 << 64) - 1
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15
_SEED = np.uint64(0x243F6A8885A308D3)
NULL_WORD = np.uint64(0x7FF8000000000000)  # also the canonical NaN
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix µs: PostgreSQL's binary time origin
_HEADER_LEN = 19
_FLUSH_BYTES = 8 << 20


@dataclass(frozen=True)
class Digest:
    """Count, content sum and time range of a set of rows; ``+`` merges disjoint sets."""

    count: int = 0
    total: int = 0
    first_us: int | None = None
    last_us: int | None = None

    def __add__(self, other: Digest) -> Digest:
        firsts = [v for v in (self.first_us, other.first_us) if v is not None]
        lasts = [v for v in (self.last_us, other.last_us) if v is not None]
        return Digest(
            self.count + other.count,
            (self.total + other.total) & MASK,
            min(firsts) if firsts else None,
            max(lasts) if lasts else None,
        )

    @property
    def checksum(self) -> str:
        return f"{self.count}:{self.total:016x}"


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _C1
    x = (x ^ (x >> np.uint64(27))) * _C2
    return x ^ (x >> np.uint64(31))


def _digest_words(words: Sequence[np.ndarray], ts_us: np.ndarray) -> Digest:
    n = len(ts_us)
    if n == 0:
        return Digest()
    with np.errstate(over="ignore"):
        h = np.full(n, _SEED, dtype=np.uint64)
        for i, w in enumerate(words):
            salt = np.uint64((_GOLDEN * (i + 1)) & MASK)
            h = _mix(h ^ _mix(w + salt))
        total = int(h.sum(dtype=np.uint64))
    return Digest(n, total & MASK, int(ts_us.min()), int(ts_us.max()))


def float_words(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 == +0.0
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = NULL_WORD
    return bits


def text_words(values: Sequence[str | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        out[i] = (
            NULL_WORD
            if v is None
            else int.from_bytes(hashlib.md5(v.encode(), usedforsecurity=False).digest()[:8], "big")
        )
    return out


def frame_digest(frame: pl.DataFrame, columns: Sequence[str], text: frozenset[str]) -> Digest:
    """Digest of a normalised frame; ``columns[0]`` is ``ts`` (Datetime µs, UTC)."""
    ts_us = frame[columns[0]].dt.epoch("us").to_numpy().astype(np.int64)
    words = [ts_us.view(np.uint64)]
    for name in columns[1:]:
        series = frame[name]
        if name in text:
            words.append(text_words(series.to_list()))
        else:
            words.append(float_words(series.cast(pl.Float64).fill_null(float("nan")).to_numpy()))
    return _digest_words(words, ts_us)


def select_list(columns: Sequence[str], text: frozenset[str], alias: str = "t") -> str:
    """The SELECT list yielding the digest words of ``columns`` (``ts`` first) server-side."""
    parts = []
    for i, name in enumerate(columns):
        col = f"{alias}.{quote_ident(name)}"
        if i == 0:
            parts.append(col)
        elif name in text:
            parts.append(
                f"coalesce(('x' || substr(md5({col}), 1, 16))::bit(64)::bigint, "
                f"{int(NULL_WORD)}::numeric::bigint)"
            )
        else:
            parts.append(f"coalesce({col}::float8, 'NaN'::float8)")
    return ", ".join(parts)


class _Decoder:
    """Consumes a binary COPY stream of fixed 8-byte, non-null fields."""

    def __init__(self, columns: Sequence[str], text: frozenset[str]) -> None:
        fields: list[tuple[str, str]] = [("n", ">i2")]
        self.kinds = []
        for i, name in enumerate(columns):
            kind = "ts" if i == 0 else ("text" if name in text else "float")
            self.kinds.append(kind)
            fields += [(f"l{i}", ">i4"), (f"v{i}", ">i8" if kind != "float" else ">f8")]
        self.dtype = np.dtype(fields)
        self.buffer = bytearray()
        self.header_done = False
        self.digest = Digest()

    async def feed(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.header_done:
            if len(self.buffer) < _HEADER_LEN:
                return
            del self.buffer[:_HEADER_LEN]
            self.header_done = True
        rows = len(self.buffer) // self.dtype.itemsize
        if rows == 0:
            return
        cut = rows * self.dtype.itemsize
        arr = np.frombuffer(bytes(self.buffer[:cut]), dtype=self.dtype)
        del self.buffer[:cut]
        ts_us = arr["v0"].astype(np.int64) + _PG_EPOCH_US
        words = [ts_us.view(np.uint64)]
        for i, kind in enumerate(self.kinds[1:], start=1):
            col = arr[f"v{i}"]
            words.append(
                float_words(col.astype(np.float64))
                if kind == "float"
                else col.astype(np.int64).view(np.uint64)
            )
        self.digest = self.digest + _digest_words(words, ts_us)

    def finish(self) -> Digest:
        self._flush()
        if bytes(self.buffer) not in (b"\xff\xff", b""):
            raise ValueError(f"unexpected COPY trailer {bytes(self.buffer[:8])!r}")
        return self.digest


async def db_digest(
    conn: asyncpg.Connection,
    query: str,
    args: Sequence[object],
    columns: Sequence[str],
    text: frozenset[str],
) -> Digest:
    """Digest of the rows ``query`` returns; its SELECT list must be :func:`select_list`."""
    decoder = _Decoder(columns, text)
    await conn.copy_from_query(query, *args, output=decoder.feed, format="binary")
    return decoder.finish()
