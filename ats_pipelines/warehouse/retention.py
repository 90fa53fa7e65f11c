"""Retention and compression of the market tables, applied by a Dagster schedule.

Per configured table and age:

* retention — hypertables lose whole chunks older than the age (``drop_chunks``, which the
  Apache edition has); under the ``timescale`` licence a retention policy is also registered so
  a production server keeps doing it, but the schedule's own ``drop_chunks`` is what we rely on
  (DESIGN.md: the job scheduler is not trusted for correctness). Plain tables (PostgreSQL
  without TimescaleDB) delete the rows instead.
* compression — ``timescale`` licence only: chunks older than the age are compressed now and a
  compression policy is registered; elsewhere it is skipped with one logged degradation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ats_pipelines.db.sqlid import qualified
from ats_pipelines.warehouse.config import RETENTION_TABLES
from ats_pipelines.warehouse.coverage import server_now
from ats_pipelines.warehouse.rollups import server_edition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableAction:
    """What the schedule did to one table."""

    table: str
    kind: str  # retention | compression
    action: str  # drop_chunks | delete | compress_chunk | skipped
    age: timedelta
    affected: int  # chunks dropped or compressed, or rows deleted
    note: str = ""


async def _hypertables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT hypertable_schema || '.' || hypertable_name AS name "
        "FROM timescaledb_information.hypertables"
    )
    return {r["name"] for r in rows}


async def _retain(
    conn: asyncpg.Connection,
    edition: str,
    hypertables: set[str],
    table: str,
    age: timedelta,
    cutoff: datetime,
) -> TableAction:
    if table in hypertables:
        note = ""
        if edition == "timescale":
            await conn.execute(
                "SELECT add_retention_policy($1::regclass, $2::interval, if_not_exists => true)",
                table,
                age,
            )
            note = "policy registered"
        dropped = await conn.fetch(
            "SELECT drop_chunks($1::regclass, older_than => $2::timestamptz)", table, cutoff
        )
        return TableAction(table, "retention", "drop_chunks", age, len(dropped), note)
    status = await conn.execute(f"DELETE FROM {qualified(table)} WHERE ts < $1", cutoff)  # noqa: S608
    return TableAction(
        table,
        "retention",
        "delete",
        age,
        int(status.rsplit(" ", 1)[-1]),
        "plain table: rows deleted",
    )


async def _compress(
    conn: asyncpg.Connection, table: str, age: timedelta, cutoff: datetime
) -> TableAction:
    enabled = await conn.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema || '.' || hypertable_name = $1",
        table,
    )
    if not enabled:
        return TableAction(
            table,
            "compression",
            "skipped",
            age,
            0,
            "compression not enabled on this table (see sql/020)",
        )
    await conn.execute(
        "SELECT add_compression_policy($1::regclass, $2::interval, if_not_exists => true)",
        table,
        age,
    )
    done = await conn.fetch(
        "SELECT compress_chunk(c, if_not_compressed => true) "
        "FROM show_chunks($1::regclass, older_than => $2::timestamptz) AS c",
        table,
        cutoff,
    )
    return TableAction(table, "compression", "compress_chunk", age, len(done), "policy registered")


async def apply_retention(
    conn: asyncpg.Connection,
    retention: Mapping[str, timedelta],
    compression: Mapping[str, timedelta],
    *,
    now: datetime | None = None,
) -> list[TableAction]:
    """Apply every configured age on whatever this server's edition offers."""
    for table in (*retention, *compression):
        if table not in RETENTION_TABLES:
            raise ValueError(f"{table!r} is not a market table with a ts column")
    edition = await server_edition(conn)
    now = now or await server_now(conn)
    hypertables = await _hypertables(conn) if edition != "postgresql" else set()
    actions = [
        await _retain(conn, edition, hypertables, table, age, now - age)
        for table, age in retention.items()
    ]
    for table, age in compression.items():
        if edition != "timescale" or table not in hypertables:
            actions.append(
                TableAction(
                    table,
                    "compression",
                    "skipped",
                    age,
                    0,
                    f"needs the timescale licence (edition {edition})",
                )
            )
            continue
        actions.append(await _compress(conn, table, age, now - age))
    for a in actions:
        log.info(
            "event=retention table=%s kind=%s action=%s age=%s affected=%s note=%r",
            a.table,
            a.kind,
            a.action,
            a.age,
            a.affected,
            a.note,
        )
    return actions
