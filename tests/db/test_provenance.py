"""Provenance recorded by the bulk writer and withdrawn by ``retract_batch``: on the small
(one-statement) and the staged path alike, an equal write by another writer is recorded once,
a value change takes the row over, and withdrawing a batch deletes only what nobody else
asserted."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.provenance import retract_batch
from tests.db.test_bulk import candles

PATHS = [pytest.param(500, id="small"), pytest.param(0, id="staged")]


def by(frame: pl.DataFrame, source: str, batch: int | None) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(source).alias("source"), pl.lit(batch, pl.Int64).alias("batch_id")
    )


async def rows(conn: asyncpg.Connection, exchange: str) -> list[tuple[Any, ...]]:
    records = await conn.fetch(
        "SELECT close, source, batch_id, asserted_by FROM market.candles WHERE exchange = $1 "
        "ORDER BY ts",
        exchange,
    )
    return [(r["close"], r["source"], r["batch_id"], r["asserted_by"]) for r in records]


@pytest.mark.parametrize("small", PATHS)
async def test_assertions_are_recorded_once_and_withdrawn(
    conn: asyncpg.Connection, small: int
) -> None:
    ex = f"p{uuid.uuid4().hex[:8]}"
    base = candles(3, ex)
    first = await bulk_write(conn, "market.candles", by(base, "legacy", 1), small_batch_rows=small)
    assert first.inserted == 3
    # an equal write by another batch, twice, and by the stream: recorded once each, skipped
    for _ in range(2):
        again = await bulk_write(
            conn, "market.candles", by(base, "rest", 2), small_batch_rows=small
        )
        assert (again.inserted, again.updated, again.skipped) == (0, 0, 3)
    await bulk_write(conn, "market.candles", base.with_columns(pl.lit("stream").alias("source")))
    # the writer itself writing again records nothing
    await bulk_write(conn, "market.candles", by(base, "legacy", 1), small_batch_rows=small)
    # a different close for the last minute (update mode): the row changes hands
    changed = by(base.tail(1), "heal", None).with_columns(pl.col("close") + 0.5)
    result = await bulk_write(
        conn,
        "market.candles",
        changed,
        on_conflict="update",
        update_columns=["close", "source"],
        small_batch_rows=small,
    )
    assert (result.updated, result.skipped) == (1, 0)
    c0, c1, c2 = base["close"].to_list()
    assert await rows(conn, ex) == [
        (c0, "legacy", 1, ["rest#2", "stream"]),
        (c1, "legacy", 1, ["rest#2", "stream"]),
        (c2 + 0.5, "heal", None, None),
    ]

    # withdrawing batch 1 hands its rows to the first other writer; nothing is deleted
    assert await retract_batch(conn, "market.candles", 1, {"exchange": ex}) == (0, 2)
    assert await rows(conn, ex) == [
        (c0, "rest", 2, ["stream"]),
        (c1, "rest", 2, ["stream"]),
        (c2 + 0.5, "heal", None, None),
    ]
    # a batch only listed in asserted_by leaves the list
    await bulk_write(conn, "market.candles", by(base.head(1), "legacy", 3))
    await retract_batch(conn, "market.candles", 3, {"exchange": ex})
    assert (await rows(conn, ex))[0] == (c0, "rest", 2, ["stream"])
    # a batch's rows nobody else asserted are deleted
    alone = candles(2, ex, start=10)
    await bulk_write(conn, "market.candles", by(alone, "legacy", 4), small_batch_rows=small)
    assert await retract_batch(conn, "market.candles", 4, {"exchange": ex}) == (2, 0)
    assert len(await rows(conn, ex)) == 3
