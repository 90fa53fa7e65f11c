"""Feature and label partitions: one lake file per family (or label set), series and day.

A day's feature rows are computed from a fixed frame: exactly ``WARMUP_ROWS`` bars before the
day (every window fits in it) plus the day's bars. So a partition's rows depend only on the
data, never on which other days the same run covered: a ranged backfill and day-by-day runs
write the same files, byte for byte.

``created_timestamp`` is when a row's values were computed: a re-run that computes the same
values keeps the stored timestamps (and so writes nothing — the file is byte-identical); rows
whose values changed get the run's time. "Changed" is bitwise: polars' sliding window sums
carry a changed input forward as rounding in the last bits, so rows past the longest window
after a changed bar can get a new timestamp for values equal to ~1e-15 relative.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.compute import (
    bar_rows,
    finalize,
    join_higher,
    rolling_features,
)
from ats_pipelines.features.duck import connect
from ats_pipelines.features.export import BOOK_DATASET, BOOK_SCHEMA, CANDLE_SCHEMA, candles_dataset
from ats_pipelines.features.labels import LABEL_SCHEMA, LabelSpec, series_labels
from ats_pipelines.features.lake import (
    SYMBOL_KEY,
    Lake,
    mark_unique,
    read_table,
    write_if_changed,
)

log = logging.getLogger(__name__)

# The longest chain of windows: the MACD signal (9-span EMA, 36 bars) over the MACD line
# (26-span EMA, 104 bars) needs 139 bars; a little more for headroom.
WARMUP_ROWS = 150
FAMILY_KEY = "ats.family"


@dataclass
class PartitionOutcome:
    day: date
    rows: int
    written: bool
    sha256: str


@dataclass
class BuildReport:
    dataset: str
    exchange: str
    symbol: str
    partitions: list[PartitionOutcome] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def written(self) -> int:
        return sum(p.written for p in self.partitions)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _read_frame(
    lake: Lake, dataset: str, exchange: str, symbol: str, days: Sequence[date], schema: pa.Schema
) -> pl.DataFrame:
    frame = pl.from_arrow(read_table(lake.files(dataset, exchange, symbol, days), schema))
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("ts")


def load_with_warmup(
    lake: Lake,
    dataset: str,
    exchange: str,
    symbol: str,
    days: Sequence[date],
    schema: pa.Schema,
    warmup_rows: int = WARMUP_ROWS,
) -> pl.DataFrame:
    """Every row from the first of ``days`` to the last, and at least ``warmup_rows`` rows
    before the first (whole files, as many earlier days as it takes)."""
    first, last = min(days), max(days)
    available = lake.days(dataset, exchange, symbol)
    earlier, rows = [], 0
    for day in reversed([d for d in available if d < first]):
        if rows >= warmup_rows:
            break
        earlier.append(day)
        rows += pq.read_metadata(lake.partition_path(dataset, exchange, symbol, day)).num_rows
    span = [d for d in available if first <= d <= last]
    return _read_frame(lake, dataset, exchange, symbol, [*earlier, *span], schema)


def load_with_lookahead(
    lake: Lake,
    dataset: str,
    exchange: str,
    symbol: str,
    days: Sequence[date],
    schema: pa.Schema,
    rows_after: int,
) -> pl.DataFrame:
    """Every row from the first of ``days`` to the last, and at least ``rows_after`` after it."""
    first, last = min(days), max(days)
    available = lake.days(dataset, exchange, symbol)
    later, rows = [], 0
    for day in (d for d in available if d > last):
        if rows >= rows_after:
            break
        later.append(day)
        rows += pq.read_metadata(lake.partition_path(dataset, exchange, symbol, day)).num_rows
    span = [d for d in available if first <= d <= last]
    return _read_frame(lake, dataset, exchange, symbol, [*span, *later], schema)


def day_frame(rows: pl.DataFrame, day: date, before: int, after: int = 0) -> pl.DataFrame:
    """The day's rows with ``before`` rows ahead of them and ``after`` rows following."""
    ts = rows["ts"]
    start = int(ts.search_sorted(_day_start(day), side="left"))
    end = int(ts.search_sorted(_day_start(day) + timedelta(days=1), side="left"))
    lo, hi = max(0, start - before), min(rows.height, end + after)
    return rows.slice(lo, hi - lo)


def _in_day(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    start = _day_start(day)
    return frame.filter((pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(days=1)))


def with_created(
    rows: pl.DataFrame,
    previous: pl.DataFrame | None,
    features: Sequence[str],
    computed_at: datetime,
) -> pl.DataFrame:
    """Add ``created_timestamp``: kept from ``previous`` where a row's values are unchanged."""
    now = pl.lit(computed_at).cast(pl.Datetime("us", "UTC"))
    if previous is None or previous.is_empty():
        return rows.with_columns(created_timestamp=now)
    old = previous.select(
        "ts", "created_timestamp", *(pl.col(f).alias(f"_old_{f}") for f in features)
    )
    joined = rows.join(old, on="ts", how="left", maintain_order="left")
    same = pl.all_horizontal(
        pl.col("created_timestamp").is_not_null(),
        *(pl.col(f).eq_missing(pl.col(f"_old_{f}")) for f in features),
    )
    return joined.with_columns(
        created_timestamp=pl.when(same).then(pl.col("created_timestamp")).otherwise(now)
    ).drop([f"_old_{f}" for f in features])


def _write_features(
    lake: Lake,
    family: cat.Family,
    exchange: str,
    symbol: str,
    day: date,
    rows: pl.DataFrame,
    computed_at: datetime,
) -> PartitionOutcome:
    path = lake.partition_path(family.dataset, exchange, symbol, day)
    previous = pl.read_parquet(path) if path.is_file() else None
    rows = with_created(rows, previous, family.features, computed_at)
    schema = family.schema()
    table = rows.select(schema.names).to_arrow().cast(schema)
    outcome = write_if_changed(path, table, {SYMBOL_KEY: symbol, FAMILY_KEY: family.name})
    mark_unique(lake.dataset_dir(family.dataset), ["exchange", "symbol", "event_timestamp"])
    return PartitionOutcome(day, table.num_rows, outcome.written, outcome.sha256)


def _higher_features(
    lake: Lake, exchange: str, symbol: str, days: Sequence[date]
) -> dict[str, pl.DataFrame]:
    # A 1-minute row of day D may carry a higher bar that opened on D-1 (it closes on D).
    span = sorted({d + timedelta(days=k) for d in days for k in (-1, 0)})
    out = {}
    for timeframe in cat.HIGHER_TIMEFRAMES:
        family = cat.family_of(timeframe)
        out[timeframe] = _read_frame(lake, family.dataset, exchange, symbol, span, family.schema())
    return out


def build_features(
    lake: Lake,
    family: cat.Family,
    exchange: str,
    symbol: str,
    days: Sequence[date],
    computed_at: datetime | None = None,
) -> BuildReport:
    """Compute and write one family's partitions of ``days`` for a series."""
    computed_at = computed_at or datetime.now(UTC)
    if computed_at.tzinfo is None:
        raise ValueError("computed_at must be timezone-aware (UTC)")
    report = BuildReport(family.dataset, exchange, symbol)
    days = sorted(set(days))
    if not days:
        return report
    bars = load_with_warmup(
        lake, candles_dataset(family.timeframe), exchange, symbol, days, CANDLE_SCHEMA
    )
    minute = family.timeframe == cat.BASE_TIMEFRAME
    book = (
        _read_frame(lake, BOOK_DATASET, exchange, symbol, _days_of(bars), BOOK_SCHEMA)
        if minute
        else None
    )
    higher = _higher_features(lake, exchange, symbol, days) if minute else {}
    con = connect()
    try:
        rows = bar_rows(bars, family.timeframe, book, con=con) if bars.height else bars
        for day in days:
            frame = day_frame(rows, day, before=WARMUP_ROWS)
            if frame.is_empty() or _in_day(frame, day).is_empty():
                report.partitions.append(_drop(lake, family.dataset, exchange, symbol, day))
                continue
            computed = _in_day(rolling_features(frame), day)
            if minute:
                computed = join_higher(computed, higher)
            report.partitions.append(
                _write_features(
                    lake, family, exchange, symbol, day, finalize(computed, family), computed_at
                )
            )
    finally:
        con.close()
    log.info(
        "event=features family=%s exchange=%s symbol=%s days=%s..%s rows=%d written=%d",
        family.name,
        exchange,
        symbol,
        days[0],
        days[-1],
        report.rows,
        report.written,
    )
    return report


def _days_of(frame: pl.DataFrame) -> list[date]:
    if frame.is_empty():
        return []
    return frame["ts"].dt.date().unique().sort().to_list()


def _drop(lake: Lake, dataset: str, exchange: str, symbol: str, day: date) -> PartitionOutcome:
    """A day without source rows has no file (a stale one from earlier data is removed)."""
    path = lake.partition_path(dataset, exchange, symbol, day)
    existed = path.is_file()
    if existed:
        path.unlink()
    return PartitionOutcome(day, 0, existed, "")


def build_labels(
    lake: Lake, spec: LabelSpec, exchange: str, symbol: str, days: Sequence[date]
) -> BuildReport:
    """Compute and write a label set's partitions of ``days`` for a series."""
    report = BuildReport(spec.dataset, exchange, symbol)
    days = sorted(set(days))
    if not days:
        return report
    bars = load_with_lookahead(
        lake,
        candles_dataset(spec.timeframe),
        exchange,
        symbol,
        days,
        CANDLE_SCHEMA,
        rows_after=spec.horizon,
    )
    for day in days:
        frame = day_frame(bars, day, before=0, after=spec.horizon)
        labels = _in_day(series_labels(frame, spec), day) if frame.height else frame
        if labels.is_empty():
            report.partitions.append(_drop(lake, spec.dataset, exchange, symbol, day))
            continue
        table = labels.select(LABEL_SCHEMA.names).to_arrow().cast(LABEL_SCHEMA)
        path = lake.partition_path(spec.dataset, exchange, symbol, day)
        outcome = write_if_changed(
            path, table, {SYMBOL_KEY: symbol, "ats.label_spec": repr(spec.describe())}
        )
        report.partitions.append(
            PartitionOutcome(day, table.num_rows, outcome.written, outcome.sha256)
        )
    log.info(
        "event=labels spec=%s exchange=%s symbol=%s days=%s..%s rows=%d written=%d",
        spec.name,
        exchange,
        symbol,
        days[0],
        days[-1],
        report.rows,
        report.written,
    )
    return report
