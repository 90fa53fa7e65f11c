"""Export candles (every timeframe) and 1-minute order-book aggregates from TimescaleDB to the lake.

One Parquet file per dataset, exchange, symbol and day (:mod:`ats_pipelines.features.lake`),
built through Arrow. Incremental: each file records a fingerprint of its source rows (row
count and latest change time), and a run exports only the days whose fingerprint in the
database differs — new days, and days whose rows changed or were deleted (a day with no rows
left loses its file). Re-running an unchanged day writes nothing.

Bars come from :func:`ats_pipelines.warehouse.bar_location.bars_relation`. Where they are
not simply rows of ``market.candles`` (continuous aggregates, timeframes computed on demand)
their fingerprint is a digest of the bars served that day: an aggregate changes when it is
refreshed, not when a minute under it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from ats_pipelines.features.catalog import EXPORT_TIMEFRAMES
from ats_pipelines.features.lake import SYMBOL_KEY, Lake, file_metadata, remove, write_if_changed
from ats_pipelines.lib.tables import CANDLES, ORDER_BOOK_1M_AGG
from ats_pipelines.warehouse.bar_location import bars_relation, table_backed
from ats_pipelines.warehouse.intervals import day_runs
from ats_pipelines.warehouse.rollups import rollup_mode

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "ats.fingerprint"
BOOK_DATASET = "order_book_1m"

CANDLE_SCHEMA = CANDLES.arrow_schema(("exchange", "symbol", "timeframe", "ts", *CANDLES.values))
# snapshots widened to int64 as the lake's files have always had it
BOOK_SCHEMA = pa.schema(
    [
        f.with_type(pa.int64()) if f.name == "snapshots" else f
        for f in ORDER_BOOK_1M_AGG.arrow_schema(
            ("exchange", "symbol", "ts", *ORDER_BOOK_1M_AGG.values)
        )
    ]
)

_DAY = "(ts AT TIME ZONE 'UTC')::date"


def candles_dataset(timeframe: str) -> str:
    return f"candles/{timeframe}"


@dataclass
class DatasetReport:
    dataset: str
    exported: list[date] = field(default_factory=list)  # files (re)written
    unchanged: list[date] = field(default_factory=list)
    removed: list[date] = field(default_factory=list)
    rows: int = 0


@dataclass
class ExportReport:
    exchange: str
    symbol: str
    mode: str
    datasets: list[DatasetReport] = field(default_factory=list)

    @property
    def files_written(self) -> int:
        return sum(len(d.exported) for d in self.datasets)

    @property
    def rows_written(self) -> int:
        return sum(d.rows for d in self.datasets)


def _day_bounds(days: Iterable[date]) -> tuple[datetime, datetime]:
    ordered = sorted(days)
    return (
        datetime.combine(ordered[0], time(), UTC),
        datetime.combine(ordered[-1], time(), UTC) + timedelta(days=1),
    )


def _fingerprint(count: int, changed: datetime | None) -> str:
    return f"{count}|{changed.isoformat() if changed else '-'}"


async def _candle_fingerprints(
    conn: asyncpg.Connection,
    mode: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    days: Sequence[date],
) -> dict[date, str]:
    start, end = _day_bounds(days)
    if table_backed(timeframe, mode):
        base = await conn.fetch(
            f"SELECT {_DAY} AS day, count(*) AS n, max(ingested_at) AS changed "  # noqa: S608
            "FROM market.candles WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
            "AND ts >= $4 AND ts < $5 GROUP BY 1",
            exchange,
            symbol,
            timeframe,
            start,
            end,
        )
        return {r["day"]: _fingerprint(r["n"], r["changed"]) for r in base}
    # aggregates and computed bars have no change time of their own: a digest of the bars
    # served (they change when a refresh or a native bar changes them, not before)
    row = ", ".join(("ts", *CANDLES.values))
    digests = await conn.fetch(
        f"SELECT {_DAY} AS day, count(*) AS n, "  # noqa: S608
        f"md5(string_agg(ROW({row})::text, ',' ORDER BY ts)) AS digest "
        f"FROM {bars_relation(timeframe, mode)} "
        "WHERE exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4 GROUP BY 1",
        exchange,
        symbol,
        start,
        end,
    )
    return {r["day"]: f"{r['n']}|{r['digest']}" for r in digests}


async def _book_fingerprints(
    conn: asyncpg.Connection, exchange: str, symbol: str, days: Sequence[date]
) -> dict[date, str]:
    start, end = _day_bounds(days)
    rows = await conn.fetch(
        f"SELECT {_DAY} AS day, count(*) AS n, max(computed_at) AS changed "  # noqa: S608
        "FROM market.order_book_1m_agg WHERE exchange = $1 AND symbol = $2 "
        "AND ts >= $3 AND ts < $4 GROUP BY 1",
        exchange,
        symbol,
        start,
        end,
    )
    return {r["day"]: _fingerprint(r["n"], r["changed"]) for r in rows}


def _to_table(records: list[asyncpg.Record], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*records, strict=True)) if records else [[] for _ in schema]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
    )


async def _fetch_candles(
    conn: asyncpg.Connection,
    mode: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    days: Sequence[date],
) -> pa.Table:
    rest = ", ".join(f.name for f in CANDLE_SCHEMA)[len("exchange, symbol, timeframe, ") :]
    sql = (
        f"SELECT exchange, symbol, $5::text AS timeframe, {rest} "  # noqa: S608
        f"FROM {bars_relation(timeframe, mode)} "
        "WHERE exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4 ORDER BY ts"
    )
    records: list[asyncpg.Record] = []
    for run in day_runs(days):
        records += await conn.fetch(sql, exchange, symbol, run.start, run.end, timeframe)
    return _to_table(records, CANDLE_SCHEMA)


async def _fetch_book(
    conn: asyncpg.Connection, exchange: str, symbol: str, days: Sequence[date]
) -> pa.Table:
    names = ", ".join(f.name for f in BOOK_SCHEMA)
    sql = (
        f"SELECT {names} FROM market.order_book_1m_agg "  # noqa: S608
        "WHERE exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4 ORDER BY ts"
    )
    records: list[asyncpg.Record] = []
    for run in day_runs(days):
        records += await conn.fetch(sql, exchange, symbol, run.start, run.end)
    return _to_table(records, BOOK_SCHEMA)


def _split_days(table: pa.Table) -> dict[date, pa.Table]:
    if table.num_rows == 0:
        return {}
    days = pc.cast(table["ts"], pa.date32()).to_pylist()  # ts is UTC: its date is the UTC day
    out: dict[date, pa.Table] = {}
    start = 0
    for i in range(1, len(days) + 1):
        if i == len(days) or days[i] != days[start]:
            out[days[start]] = table.slice(start, i - start)
            start = i
    return out


async def _export_dataset(
    conn: asyncpg.Connection,
    lake: Lake,
    report: DatasetReport,
    exchange: str,
    symbol: str,
    days: Sequence[date],
    prints: dict[date, str],
    fetch: Callable[[list[date]], Awaitable[pa.Table]],
) -> None:
    stale = []
    for day in days:
        path = lake.partition_path(report.dataset, exchange, symbol, day)
        wanted = prints.get(day)
        if wanted is None:
            if remove(path):
                report.removed.append(day)
            continue
        if path.is_file() and file_metadata(path).get(FINGERPRINT_KEY) == wanted:
            report.unchanged.append(day)
        else:
            stale.append(day)
    if not stale:
        return
    by_day = _split_days(await fetch(stale))
    for day in stale:
        table = by_day.get(day)
        if table is None:  # deleted between the fingerprint and the fetch: next run catches up
            continue
        outcome = write_if_changed(
            lake.partition_path(report.dataset, exchange, symbol, day),
            table,
            {FINGERPRINT_KEY: prints[day], SYMBOL_KEY: symbol},
        )
        report.exported.append(day)
        report.rows += outcome.rows


async def export_partitions(
    conn: asyncpg.Connection,
    lake: Lake,
    exchange: str,
    symbol: str,
    days: Sequence[date],
    timeframes: Sequence[str] = EXPORT_TIMEFRAMES,
) -> ExportReport:
    """Bring the lake's files of ``days`` up to date with the database for one symbol."""
    days = sorted(set(days))
    mode = await rollup_mode(conn)
    report = ExportReport(exchange, symbol, mode)
    if not days:
        return report
    for timeframe in timeframes:
        dataset = DatasetReport(candles_dataset(timeframe))
        prints = await _candle_fingerprints(conn, mode, exchange, symbol, timeframe, days)

        async def fetch(stale: list[date], tf: str = timeframe) -> pa.Table:
            return await _fetch_candles(conn, mode, exchange, symbol, tf, stale)

        await _export_dataset(conn, lake, dataset, exchange, symbol, days, prints, fetch)
        report.datasets.append(dataset)
    book = DatasetReport(BOOK_DATASET)
    prints = await _book_fingerprints(conn, exchange, symbol, days)

    async def fetch_book(stale: list[date]) -> pa.Table:
        return await _fetch_book(conn, exchange, symbol, stale)

    await _export_dataset(conn, lake, book, exchange, symbol, days, prints, fetch_book)
    report.datasets.append(book)
    log.info(
        "event=lake_export exchange=%s symbol=%s days=%s..%s files_written=%d rows=%d",
        exchange,
        symbol,
        days[0],
        days[-1],
        report.files_written,
        report.rows_written,
    )
    return report
