"""Streaming de-duplication of time-sorted chunks, keeping the LAST row of each key.

"Last wins" matches the bulk writer: a cache that was appended to re-wrote the bar it had
first written while still open. Across chunks this needs the input sorted by time: rows at the
newest timestamp are held back until a later chunk proves no more rows share it. A chunk
reaching back before that timestamp raises :class:`Unsorted`; the loader then restarts the
file through an external sort (see ``spill.py``) instead of holding the whole file in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ats_pipelines.migration.normalise import TS


class Unsorted(Exception):
    """The file is not sorted by time; the message says where."""


class StreamDeduper:
    def __init__(self, key: Sequence[str]) -> None:
        self.key = list(key)
        self.carry: pl.DataFrame | None = None
        self.duplicates = 0

    def push(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """Rows of ``chunk`` (plus held-back ones) that are final: unique and time-sorted."""
        if chunk.is_empty():
            return chunk
        if self.carry is not None:
            watermark = self.carry[TS][0]
            earliest = chunk[TS].min()
            if earliest is not None and earliest < watermark:
                raise Unsorted(f"rows at {earliest} arrive after rows at {watermark}")
            chunk = pl.concat([self.carry, chunk], how="vertical")
        # stable sort keeps arrival order among equal keys, so keep="last" is the later row
        ordered = chunk.sort(TS, maintain_order=True, nulls_last=True)
        unique = ordered.unique(subset=self.key, keep="last", maintain_order=True)
        self.duplicates += ordered.height - unique.height
        newest = unique[TS][-1]
        held = unique[TS] == newest
        self.carry = unique.filter(held)
        return unique.filter(~held)

    def finish(self) -> pl.DataFrame | None:
        carry, self.carry = self.carry, None
        return carry
