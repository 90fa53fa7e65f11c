"""The bulk writer: the one way the project writes market rows.

Rows travel as binary COPY into a temporary staging table, then ``INSERT … SELECT … ON
CONFLICT`` moves them into the target, all in one transaction. Re-writing the same rows is
therefore harmless (idempotent), and the caller learns how many rows were inserted, updated
(changed values) and skipped (already present, or repeated within the batch).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import polars as pl
import pyarrow as pa

from ats_pipelines.db.copy_binary import PgColumn, encode, supported
from ats_pipelines.db.sqlid import qualified, quote_ident

OnConflict = Literal["nothing", "update"]
DEFAULT_CHUNK_ROWS = 250_000
_stage_counter = itertools.count()


class BulkWriteError(ValueError):
    """The rows do not fit the target table; the message names the table and column."""


@dataclass(frozen=True)
class WriteResult:
    """What one bulk write did. ``received = inserted + updated + skipped``."""

    received: int
    inserted: int
    updated: int
    skipped: int

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.received + other.received,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.skipped + other.skipped,
        )

    def as_metadata(self) -> dict[str, int]:
        return {"rows_received": self.received, "rows_inserted": self.inserted,
                "rows_updated": self.updated, "rows_skipped": self.skipped}


EMPTY_RESULT = WriteResult(0, 0, 0, 0)


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: dict[str, PgColumn]
    primary_key: tuple[str, ...]


# Per connection: a pooled connection keeps its cache; a closed one takes it along.
_TABLE_INFO_CACHE: weakref.WeakKeyDictionary[Any, dict[str, TableInfo]] = (
    weakref.WeakKeyDictionary()
)


async def table_info(conn: asyncpg.Connection, table: str) -> TableInfo:
    """Column types and primary key of ``schema.table`` from the catalog (cached per server)."""
    cached = _TABLE_INFO_CACHE.setdefault(conn, {})
    if table in cached:
        return cached[table]
    try:
        oid = await conn.fetchval("SELECT to_regclass($1)::oid", qualified(table))
    except ValueError as exc:
        raise BulkWriteError(str(exc)) from exc
    if oid is None:
        raise BulkWriteError(f"table {table} does not exist (has `ats db migrate` run?)")
    cols = await conn.fetch(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        oid,
    )
    pk = await conn.fetch(
        "SELECT a.attname FROM pg_index i "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
        oid,
    )
    info = TableInfo(
        name=table,
        columns={r["attname"]: PgColumn(r["attname"], r["typname"]) for r in cols},
        primary_key=tuple(r["attname"] for r in pk),
    )
    cached[table] = info
    return info


def to_arrow(rows: pa.Table | pl.DataFrame | Sequence[Mapping[str, Any]]) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pl.DataFrame):
        return rows.to_arrow()
    return pa.Table.from_pylist(list(rows))


def _dedupe(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the last row of each key: a later observation of the same bar supersedes."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.select(pl.struct(list(key)).is_duplicated().any()).item():
        frame = frame.unique(subset=list(key), keep="last", maintain_order=True)
        return frame.to_arrow()
    return table


async def bulk_write(
    conn: asyncpg.Connection,
    table: str,
    rows: pa.Table | pl.DataFrame | Sequence[Mapping[str, Any]],
    *,
    on_conflict: OnConflict = "nothing",
    key: Sequence[str] | None = None,
    update_columns: Sequence[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> WriteResult:
    """Upsert ``rows`` into ``table`` (``schema.name``) in one transaction.

    ``on_conflict="nothing"`` keeps rows already present; ``"update"`` overwrites their
    ``update_columns`` (default: every given non-key column) when a value differs.
    """
    data = to_arrow(rows)
    received = data.num_rows
    if received == 0:
        return EMPTY_RESULT
    info = await table_info(conn, table)
    key = tuple(key or info.primary_key)
    if not key:
        raise BulkWriteError(f"{table} has no primary key; pass key=")
    names = list(data.column_names)
    unknown = [c for c in names if c not in info.columns]
    if unknown:
        raise BulkWriteError(f"{table} has no column(s) {', '.join(map(repr, unknown))}")
    missing_key = [c for c in key if c not in names]
    if missing_key:
        raise BulkWriteError(f"rows for {table} lack key column(s) {', '.join(missing_key)}")
    columns = [info.columns[c] for c in names]
    for col in columns:
        if not supported(col.typname):
            raise BulkWriteError(f"{table}.{col.name}: type {col.typname} is not supported")
    if on_conflict == "update":
        targets = list(update_columns or [c for c in names if c not in key])
        bad = [c for c in targets if c not in names or c in key]
        if bad:
            raise BulkWriteError(f"update_columns {bad} must be given, non-key columns")
    else:
        targets = []

    data = _dedupe(data, key)
    stage = f"_ats_stage_{next(_stage_counter)}"
    col_sql = ", ".join(quote_ident(c) for c in names)
    insert_sql = _insert_sql(table, stage, col_sql, key, targets, on_conflict)
    inserted = updated = 0
    async with conn.transaction():
        await conn.execute(
            f"CREATE TEMP TABLE {quote_ident(stage)} ON COMMIT DROP AS "  # noqa: S608
            f"SELECT {col_sql} FROM {qualified(table)} WITH NO DATA"
        )
        for start in range(0, data.num_rows, chunk_rows):
            chunk = data.slice(start, chunk_rows)
            await conn.copy_to_table(
                stage, source=_chunks(columns, chunk), columns=names, format="binary"
            )
            row = await conn.fetchrow(insert_sql)
            assert row is not None
            inserted += row["inserted"]
            updated += row["updated"]
            await conn.execute(f"TRUNCATE {quote_ident(stage)}")
    return WriteResult(received, inserted, updated, received - inserted - updated)


async def _chunks(columns: list[PgColumn], table: pa.Table):  # noqa: ANN202
    for piece in encode(columns, table):
        yield piece


def _insert_sql(
    table: str, stage: str, col_sql: str, key: Sequence[str], targets: Sequence[str],
    on_conflict: OnConflict,
) -> str:
    key_sql = ", ".join(quote_ident(c) for c in key)
    if on_conflict == "nothing" or not targets:
        action = "DO NOTHING"
    else:
        sets = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in targets)
        old = ", ".join(f"t.{quote_ident(c)}" for c in targets)
        new = ", ".join(f"EXCLUDED.{quote_ident(c)}" for c in targets)
        action = f"DO UPDATE SET {sets} WHERE ROW({old}) IS DISTINCT FROM ROW({new})"
    return (
        f"WITH w AS (INSERT INTO {qualified(table)} AS t ({col_sql}) "  # noqa: S608
        f"SELECT {col_sql} FROM {quote_ident(stage)} "
        f"ON CONFLICT ({key_sql}) {action} RETURNING (xmax = 0) AS fresh) "
        "SELECT count(*) FILTER (WHERE fresh) AS inserted, "
        "count(*) FILTER (WHERE NOT fresh) AS updated FROM w"
    )


async def copy_raw(conn: asyncpg.Connection, table: str, rows: pa.Table) -> int:
    """Plain binary COPY straight into ``table`` (no conflict handling): the benchmark baseline
    and the path for freshly created tables."""
    info = await table_info(conn, table)
    columns = [info.columns[c] for c in rows.column_names]
    await conn.copy_to_table(
        table.split(".")[-1], schema_name=table.split(".")[0] if "." in table else None,
        source=_chunks(columns, rows), columns=rows.column_names, format="binary",
    )
    return rows.num_rows
