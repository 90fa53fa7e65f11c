"""One REST range of 1-minute candles: fetched, validated, written, and logged.

The exchange client walks the pages; the shared :class:`DataValidator` splits the rows into
accepted and rejected (rejects go to ``ops.quarantine`` with their rule and source); accepted
rows go through the bulk writer. Candles of closed minutes are the exchange's record, so a row
already stored with other values (the stream's, say) is overwritten, and the rest of the write
is a no-op: writing a range twice leaves one row per key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, cast

import asyncpg
import polars as pl

from ats_pipelines.db.bulk import EMPTY_RESULT, WriteResult, bulk_write
from ats_pipelines.db.quarantine import quarantine
from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.warehouse.coverage import EmptyAnswers, record_answers, record_fetch
from ats_pipelines.warehouse.intervals import Interval, floor_minute, split_days

log = logging.getLogger(__name__)

TIMEFRAME = "1m"
SOURCE = "rest"
OHLCV = ("open", "high", "low", "close", "volume")
_RAW_SCHEMA = {
    "ts": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


class CandleSource(Protocol):
    """What ingestion needs of :class:`ats_pipelines.exchange.client.ExchangeClient`."""

    async def server_time_ms(self) -> int: ...

    async def fetch_ohlcv_range(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int
    ) -> list[list[Any]]: ...


@dataclass(frozen=True)
class DayResult:
    """What one UTC day of a range produced (a partition's own numbers in a ranged run)."""

    fetched: int = 0
    rejected: int = 0
    quarantined: int = 0
    write: WriteResult = EMPTY_RESULT
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def __add__(self, other: DayResult) -> DayResult:
        firsts = [t for t in (self.first_ts, other.first_ts) if t is not None]
        lasts = [t for t in (self.last_ts, other.last_ts) if t is not None]
        return DayResult(
            self.fetched + other.fetched,
            self.rejected + other.rejected,
            self.quarantined + other.quarantined,
            self.write + other.write,
            min(firsts) if firsts else None,
            max(lasts) if lasts else None,
        )


@dataclass(frozen=True)
class WindowResult:
    """What one asked range produced, in total and per UTC day."""

    symbol: str
    asked: Interval | None  # None: nothing of the window had closed yet
    fetched: int
    rejected: int
    quarantined: int
    write: WriteResult
    empty: EmptyAnswers
    first_ts: datetime | None
    last_ts: datetime | None
    days: Mapping[date, DayResult] = field(default_factory=dict)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def candles_frame(raw: list[list[Any]]) -> pl.DataFrame:
    """ccxt OHLCV lists as a frame with a UTC ``ts`` (values ccxt could not parse are null)."""
    rows = [list(r[:6]) + [None] * (6 - len(r[:6])) for r in raw]
    frame = pl.DataFrame(rows, schema=_RAW_SCHEMA, orient="row", strict=False)
    return frame.with_columns(pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC"))


async def ingest_window(
    conn: asyncpg.Connection,
    client: CandleSource,
    *,
    exchange: str,
    symbol: str,
    window: Interval,
    validator: DataValidator,
    batch_id: int | None = None,
    source: str = SOURCE,
) -> WindowResult:
    """Fetch ``window`` (clipped to minutes closed on the exchange's clock) and store it."""
    now = datetime.fromtimestamp(await client.server_time_ms() / 1000, UTC)
    asked = Interval(window.start, min(window.end, floor_minute(now)))
    if asked.end <= asked.start:
        return WindowResult(symbol, None, 0, 0, 0, EMPTY_RESULT, EmptyAnswers(0, 0, 0), None, None)
    raw = await client.fetch_ohlcv_range(symbol, TIMEFRAME, _ms(asked.start), _ms(asked.end))
    frame = candles_frame(raw).filter(
        pl.col("ts").is_between(asked.start, asked.end, closed="left")
    )
    checked = validator.candles(
        frame,
        timeframe=TIMEFRAME,
        exchange=exchange,
        symbol=symbol,
        location=f"{source} {exchange} {symbol} {TIMEFRAME}",
    )
    rows = checked.accepted.with_columns(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(TIMEFRAME).alias("timeframe"),
        pl.lit(source).alias("source"),
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
    )
    returned = frame["ts"].drop_nulls().to_list()
    # Written one UTC day at a time, so each partition of a ranged run gets its own counts;
    # a row whose time could not be read belongs to the range's first day.
    first_day = asked.start.date()
    indexed = frame.with_row_index("row").with_columns(
        pl.col("row").cast(pl.Int64), pl.col("ts").dt.date().fill_null(first_day).alias("day")
    )
    quarantinable = checked.quarantinable()
    days: dict[date, DayResult] = {}
    async with conn.transaction():
        for day in split_days(asked):
            d = day.start.date()
            in_day = indexed.filter(pl.col("day") == d)
            row_ids = in_day["row"].implode()
            rejected = checked.rejected.filter(pl.col("row").is_in(row_ids))
            written = await bulk_write(
                conn,
                "market.candles",
                rows.filter(pl.col("ts").dt.date() == d),
                on_conflict="update",
                update_columns=OHLCV,
            )
            days[d] = DayResult(
                fetched=in_day.height,
                rejected=rejected["row"].n_unique(),
                quarantined=await quarantine(
                    conn,
                    quarantinable.filter(pl.col("row").is_in(row_ids)),
                    dataset="candles",
                    source=source,
                    batch_id=batch_id,
                ),
                write=written,
                first_ts=cast("datetime | None", in_day["ts"].min()),
                last_ts=cast("datetime | None", in_day["ts"].max()),
            )
            await record_fetch(conn, exchange, symbol, day, in_day.height)
        empty = await record_answers(conn, exchange, symbol, asked, returned)
    total = sum(days.values(), DayResult())
    write, quarantined = total.write, total.quarantined
    if checked.rejected_rows:
        log.warning(
            "event=candles_rejected exchange=%s symbol=%s rows=%s rules=%s",
            exchange,
            symbol,
            checked.rejected_rows,
            ",".join(sorted(set(checked.rejected["rule"].to_list()))),
        )
    first = cast("datetime | None", frame["ts"].min()) if frame.height else None
    last = cast("datetime | None", frame["ts"].max()) if frame.height else None
    log.info(
        "event=candles_window exchange=%s symbol=%s start=%s end=%s fetched=%s inserted=%s "
        "updated=%s present=%s rejected=%s empty=%s",
        exchange,
        symbol,
        asked.start.isoformat(),
        asked.end.isoformat(),
        frame.height,
        write.inserted,
        write.updated,
        write.skipped,
        checked.rejected_rows,
        empty.empty,
    )
    return WindowResult(
        symbol,
        asked,
        frame.height,
        checked.rejected_rows,
        quarantined,
        write,
        empty,
        first,
        last,
        days,
    )
