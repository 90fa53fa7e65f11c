"""What the feature and label suites expect of the features domain's tables, derived from its
catalog (``ats_pipelines.features.catalog``) so the two cannot drift apart, and how the checks
read the lake's partitions.

Features that are always defined once their window is full must not be null after the warm-up
(the catalog's ``WARMUP_ROWS`` bars of a series' history); features that depend on data that
may be absent (the order book, taker volume, a higher timeframe's bar, non-zero volume) may be
null but, when present, must lie in their range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date

import polars as pl

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import WARMUP_ROWS
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake, read_table

Range = tuple[float | None, float | None]
NULLABLE = re.compile(
    r"^(tf\d+[mhd]_.*|taker_buy_ratio|vwap_dev_\d+|volume_z_\d+|spread_bps.*|"
    r"imbalance_.*|depth_imbalance_.*)$"
)
_RANGES: tuple[tuple[str, Range], ...] = (
    (r"(^|_)rsi_\d+$", (0.0, 100.0)),
    (r"^(close_position|upper_wick_ratio|lower_wick_ratio|taker_buy_ratio)$", (0.0, 1.0)),
    (r"^body_ratio$", (-1.0, 1.0)),
    (r"^(range_ratio|rv_\d+|atr_\d+)$|natr_\d+$", (0.0, None)),
    (r"(^|_)imbalance_\d+(_mean_\d+)?$|^depth_imbalance_5pct$", (-1.0, 1.0)),
    (r"^spread_bps", (0.0, None)),
    (r"^minute_of_day$", (0, 1439)),
    (r"^hour_of_day$", (0, 23)),
    (r"^day_of_week$", (0, 6)),
    (r"^tod_(sin|cos)$", (-1.0, 1.0)),
)


def required(columns: Sequence[str]) -> list[str]:
    """Features that must not be null after the warm-up."""
    return [c for c in columns if not NULLABLE.match(c)]


def ranges(columns: Sequence[str], max_abs: float) -> dict[str, Range]:
    """Each feature's declared range (finite, within ``max_abs``, when none is declared)."""
    out: dict[str, Range] = {}
    for column in columns:
        low, high = next(
            (r for pattern, r in _RANGES if re.search(pattern, column)), (-max_abs, max_abs)
        )
        out[column] = (low, max_abs if high is None else high)
    return out


def warmup_rows(bars_before: Mapping[str, int]) -> dict[str, int]:
    """Leading rows per symbol exempt from the null rule: what is left of the warm-up after
    the bars the series already had before the checked window."""
    return {s: max(0, WARMUP_ROWS - n) for s, n in bars_before.items()}


def read_partitions(
    lake: Lake, dataset: str, exchange: str, symbols: Sequence[str], days: Sequence[date]
) -> pl.DataFrame:
    """Rows of ``dataset``'s files for these symbols and days (empty frame when none)."""
    frames = []
    for symbol in symbols:
        paths = lake.files(dataset, exchange, symbol, days)
        if paths:
            frames.append(pl.from_arrow(read_table(paths)))
    frames = [f for f in frames if isinstance(f, pl.DataFrame) and f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def families() -> dict[str, cat.Family]:
    return dict(cat.FAMILIES)


LABEL_SPEC = LabelSpec()
LABEL_COLUMNS = ("label", "tb_label")
