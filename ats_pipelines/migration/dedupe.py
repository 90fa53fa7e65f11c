"""Validation and de-duplication over a time-sorted stream of chunks, in bounded memory.

The validator settles repeated keys inside the frame it is given (first row wins; repeats
with other values are quarantined). For that to hold across chunks, rows at the newest
timestamp of a chunk are held back and validated together with the next chunk: only when a
later timestamp has been seen can no more rows share theirs. This needs the input sorted by
time; a chunk reaching back before the held-back timestamp raises :class:`Unsorted`, and the
loader restarts the file through an external sort (``spill.py``) rather than holding the
whole file in memory. Within a chunk, disorder is fixed by a stable sort.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from ats_pipelines.migration.normalise import TS
from ats_pipelines.migration.validation import Checked


class Unsorted(Exception):
    """The file is not sorted by time; the message says where."""


class SortedStream:
    def __init__(self, check: Callable[[pl.DataFrame], Checked]) -> None:
        self.check = check
        self.carry: pl.DataFrame | None = None

    def push(self, chunk: pl.DataFrame) -> Checked:
        """Validate what is final: everything before the newest timestamp seen so far."""
        if chunk.is_empty():
            return Checked.empty(chunk)
        # stable: rows sharing a timestamp keep their file order, so "first" means first
        chunk = chunk.sort(TS, maintain_order=True, nulls_last=True)
        if self.carry is not None:
            watermark = self.carry[TS][0]
            earliest = chunk[TS].min()
            if earliest is not None and earliest < watermark:  # type: ignore[operator]
                raise Unsorted(f"rows at {earliest} come after rows at {watermark}")
            # rechunked: polars 2.1 string expressions (the validator's reasons) can panic on
            # multi-chunk string columns
            chunk = pl.concat([self.carry, chunk], how="vertical", rechunk=True)
        newest = chunk[TS].max()
        if newest is None:
            self.carry = None
            return self.check(chunk)
        held = (chunk[TS] == newest).fill_null(False)
        self.carry = chunk.filter(held)
        return self.check(chunk.filter(~held))

    def finish(self) -> Checked | None:
        carry, self.carry = self.carry, None
        return None if carry is None else self.check(carry)
