"""The COPY encoder's row grouping: the packed-integer unique equals numpy's row unique, for
small ranges (packed) and for ranges too wide to pack (numpy's own path)."""

from __future__ import annotations

import numpy as np
import pytest

from ats_pipelines.db.copy_binary import _unique_rows


@pytest.mark.parametrize("wide", [False, True])
def test_unique_rows_equals_numpy(wide: bool) -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    keys = np.stack(
        [
            rng.integers(0, 2, n),
            rng.integers(8, 12, n),
            np.where(rng.random(n) < 0.1, -1, rng.integers(3, 5, n)),
            rng.integers(0, 2**40, n) if wide else np.full(n, 7),
            rng.integers(0, 2**40, n) if wide else np.full(n, 9),  # 2**80 rows: not packable
        ],
        axis=1,
    ).astype(np.int64)
    want_uniq, want_inverse = np.unique(keys, axis=0, return_inverse=True)
    uniq, inverse = _unique_rows(keys)
    assert np.array_equal(uniq, want_uniq)
    assert np.array_equal(inverse, want_inverse.reshape(-1))
    assert np.array_equal(uniq[inverse], keys)  # every row maps back to its own layout
