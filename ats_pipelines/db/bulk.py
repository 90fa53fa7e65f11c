"""The bulk writer: the one way the project writes market rows.

Rows travel as binary COPY into a temporary staging table, then ``INSERT … SELECT … ON
CONFLICT`` moves them into the target, all in one transaction. A chunk whose series (every
key column but time) has no row at all in the target within the chunk's time range is copied
straight into the target instead (one index probe decides; a racing writer's unique violation
sends it back to the staged path), because new data is the common case and staging it costs a
third of the write. Re-writing the same rows is
therefore harmless (idempotent), and the caller learns how many rows were inserted, updated
(changed values) and skipped (already present, or repeated within the batch).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import asyncpg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ats_pipelines.db.copy_binary import (
    PgColumn,
    check_timestamp,
    encode,
    encode_bytes,
    supported,
)
from ats_pipelines.db.provenance import BOOKKEEPING, PROVENANCE, Provenance
from ats_pipelines.db.sqlid import qualified, quote_ident

OnConflict = Literal["nothing", "update"]
DEFAULT_CHUNK_ROWS = 250_000
# Up to this many rows of scalar columns go in one INSERT … SELECT FROM unnest (see _write_small).
SMALL_BATCH_ROWS = 500
_ARRAY_PARAM_TYPES = {
    "text",
    "float8",
    "float4",
    "int8",
    "int4",
    "int2",
    "bool",
    "timestamptz",
    "timestamp",
    "date",
}
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
    # chunks per write path: small (one unnest statement), copy (series absent: straight
    # COPY), copy_conflict (a racer took the range after the probe), staged (staging + merge)
    paths: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.received + other.received,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.skipped + other.skipped,
            dict(Counter(self.paths) + Counter(other.paths)),
        )

    def as_metadata(self) -> dict[str, int]:
        return {
            "rows_received": self.received,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_skipped": self.skipped,
        }


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
    if frame.select(list(key)).is_duplicated().any():
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
    small_batch_rows: int = SMALL_BATCH_ROWS,
) -> WriteResult:
    """Upsert ``rows`` into ``table`` (``schema.name``) in one transaction.

    ``on_conflict="nothing"`` keeps rows already present; ``"update"`` overwrites their
    ``update_columns`` (default: every given non-key column) when a value differs.
    Batches of at most ``small_batch_rows`` scalar rows take one ``INSERT … SELECT FROM
    unnest … ON CONFLICT`` statement instead of staging.
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
    time_key = next((c for c in key if info.columns[c].typname == "timestamptz"), None)
    plan = _Plan(table, stage, names, key, targets, on_conflict, time_key)
    if PROVENANCE in info.columns and "source" in names:
        plan = plan.tracked()
    inserted = updated = 0
    paths: Counter[str] = Counter()
    if data.num_rows <= small_batch_rows and all(
        info.columns[c].typname in _ARRAY_PARAM_TYPES for c in names
    ):
        return await _write_small(conn, plan, data, columns, received)
    # Rows keep the caller's order: re-sorting by time interleaves series and costs B-tree
    # inserts their rightmost-leaf fast path (measured 1.6x slower COPY into candles).
    pieces = [data.slice(i, chunk_rows) for i in range(0, data.num_rows, chunk_rows)]
    staged = False
    async with conn.transaction():
        # Custom plans let the planner prune hypertable chunks to the staged time range.
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        # Encoding the next chunk (numpy, mostly outside the GIL) overlaps the server's work
        # on the current one.
        pending = asyncio.create_task(asyncio.to_thread(encode_bytes, columns, pieces[0]))
        try:
            for i in range(len(pieces)):
                payload = await pending
                if i + 1 < len(pieces):
                    pending = asyncio.create_task(
                        asyncio.to_thread(encode_bytes, columns, pieces[i + 1])
                    )
                args = _time_range(pieces[i], time_key)
                series = _constant_series(pieces[i], key, time_key)
                if series is not None:
                    path = await _copy_if_series_absent(conn, plan, series, args, payload)
                    if path == "copy":
                        paths["copy"] += 1
                        inserted += pieces[i].num_rows
                        continue
                    if path == "copy_conflict":
                        paths["copy_conflict"] += 1
                if not staged:  # created on first need: new data never touches staging
                    await conn.execute(
                        f"CREATE TEMP TABLE {quote_ident(stage)} ON COMMIT DROP AS "  # noqa: S608
                        f"SELECT {plan.col_sql} FROM {qualified(table)} WITH NO DATA"
                    )
                    staged = True
                paths["staged"] += 1
                await conn.copy_to_table(
                    stage, source=_one(payload), columns=names, format="binary"
                )
                ins, upd = await _merge(conn, plan, args, payload, pieces[i].num_rows)
                inserted += ins
                updated += upd
                await conn.execute(f"TRUNCATE {quote_ident(stage)}")
        finally:
            if not pending.done():  # a failed chunk: don't leave the next encoding orphaned
                pending.cancel()
    return WriteResult(received, inserted, updated, received - inserted - updated, dict(paths))


@dataclass(frozen=True)
class _Plan:
    """The SQL that moves one staged chunk into the target."""

    table: str
    stage: str
    names: list[str]
    key: Sequence[str]
    targets: Sequence[str]
    on_conflict: OnConflict
    time_key: str | None
    provenance: Provenance | None = None

    def tracked(self) -> _Plan:
        """This plan recording assertions: the writer's identity (source, batch_id) is set by
        value-changing writes, never as an update column of its own."""
        values = self.targets if self.on_conflict == "update" else self.names
        values = [c for c in values if c not in self.key and c not in BOOKKEEPING]
        targets = [c for c in self.targets if c not in BOOKKEEPING]
        return replace(
            self, targets=targets, provenance=Provenance(values, "batch_id" in self.names)
        )

    @property
    def col_sql(self) -> str:
        return ", ".join(quote_ident(c) for c in self.names)

    def _key_match(self) -> str:
        """Key equality, plus the staged time range ($1..$2) so only chunks in it are read."""
        match = " AND ".join(f"t.{quote_ident(c)} = s.{quote_ident(c)}" for c in self.key)
        if self.time_key:
            match += f" AND t.{quote_ident(self.time_key)} BETWEEN $1 AND $2"
        return match

    def update_sql(self) -> str | None:
        if self.on_conflict != "update" or not self.targets:
            return None
        sets = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in self.targets)
        if self.provenance is not None:
            sets += ", " + self.provenance.takeover("s")
        old = ", ".join(f"t.{quote_ident(c)}" for c in self.targets)
        new = ", ".join(f"s.{quote_ident(c)}" for c in self.targets)
        return (
            f"UPDATE {qualified(self.table)} AS t SET {sets} "  # noqa: S608
            f"FROM {quote_ident(self.stage)} AS s WHERE {self._key_match()} "
            f"AND ROW({old}) IS DISTINCT FROM ROW({new})"
        )

    def corroborate_sql(self) -> str:
        """Present rows holding exactly the staged values, written by another writer: add
        this writer to ``asserted_by`` (once)."""
        assert self.provenance is not None
        return (
            f"UPDATE {qualified(self.table)} AS t "  # noqa: S608
            f"SET {self.provenance.corroborate('s')} FROM {quote_ident(self.stage)} AS s "
            f"WHERE {self._key_match()} AND {self.provenance.corroborates('s')}"
        )

    def count_present_sql(self) -> str:
        if self.provenance is not None:  # also: how many were written by someone else
            return (
                "SELECT count(*) AS present, "  # noqa: S608
                f"count(*) FILTER (WHERE NOT ({self.provenance.same_writer('s')})) AS foreign "
                f"FROM {quote_ident(self.stage)} AS s JOIN {qualified(self.table)} AS t "
                f"ON {self._key_match()}"
            )
        return (
            f"SELECT count(*) FROM {quote_ident(self.stage)} AS s "  # noqa: S608
            f"WHERE EXISTS (SELECT 1 FROM {qualified(self.table)} AS t WHERE {self._key_match()})"
        )

    def insert_new_sql(self) -> str:
        return (
            f"INSERT INTO {qualified(self.table)} ({self.col_sql}) "  # noqa: S608
            f"SELECT {self.col_sql} FROM {quote_ident(self.stage)} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {qualified(self.table)} AS t "
            f"WHERE {self._key_match()})"
        )

    def upsert_sql(self, source: str | None = None) -> str:
        """``INSERT … ON CONFLICT`` from the stage, or from ``source`` (a SELECT of the same
        columns), counting inserted and updated rows."""
        source = source or f"SELECT {self.col_sql} FROM {quote_ident(self.stage)}"  # noqa: S608
        key_sql = ", ".join(quote_ident(c) for c in self.key)
        update = self.update_sql()
        changed = "NOT fresh"
        if self.provenance is not None:
            action = self.provenance.on_conflict(self.targets if update is not None else [])
            # a corroboration leaves asserted_by set; a value change clears it
            changed = "NOT fresh AND asserted IS NULL"
        elif update is None:
            action = "DO NOTHING"
        else:
            sets = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in self.targets)
            old = ", ".join(f"t.{quote_ident(c)}" for c in self.targets)
            new = ", ".join(f"EXCLUDED.{quote_ident(c)}" for c in self.targets)
            action = f"DO UPDATE SET {sets} WHERE ROW({old}) IS DISTINCT FROM ROW({new})"
        returning = "(xmax = 0) AS fresh"
        if self.provenance is not None:
            returning += f", t.{quote_ident(PROVENANCE)} AS asserted"
        return (
            f"WITH w AS (INSERT INTO {qualified(self.table)} AS t ({self.col_sql}) "  # noqa: S608
            f"{source} "
            f"ON CONFLICT ({key_sql}) {action} RETURNING {returning}) "
            "SELECT count(*) FILTER (WHERE fresh) AS inserted, "
            f"count(*) FILTER (WHERE {changed}) AS updated FROM w"
        )


async def _write_small(
    conn: asyncpg.Connection,
    plan: _Plan,
    data: pa.Table,
    columns: list[PgColumn],
    received: int,
) -> WriteResult:
    """A few rows (a stream's closed bars, a heartbeat's worth): one statement, one round trip.
    Staging pays ~10 round trips and a thread hop that only large batches earn back; for a
    handful of rows ``INSERT … SELECT FROM unnest(…) ON CONFLICT`` is the cheap, safe way."""
    for col in columns:
        check_timestamp(col, data.schema.field(col.name).type)
    params = [f"${i + 1}::{col.typname}[]" for i, col in enumerate(columns)]
    # type names come from the catalog and are checked against _ARRAY_PARAM_TYPES
    source = f"SELECT * FROM unnest({', '.join(params)})"  # noqa: S608
    values = [data.column(col.name).to_pylist() for col in columns]
    row = await conn.fetchrow(plan.upsert_sql(source), *values)
    assert row is not None
    inserted, updated = row["inserted"], row["updated"]
    return WriteResult(received, inserted, updated, received - inserted - updated, {"small": 1})


def _constant_series(
    piece: pa.Table, key: Sequence[str], time_key: str | None
) -> dict[str, Any] | None:
    """The key columns (time aside) holding one value throughout the chunk, e.g. exchange and
    symbol of a trades chunk whose trade ids vary; None when the key has no time column.
    No stored row with these values in the chunk's time range means no key can conflict."""
    if time_key is None:
        return None
    series: dict[str, Any] = {}
    for name in key:
        column = piece.column(name)
        if name == time_key or column.null_count:
            continue
        if pc.count_distinct(column).as_py() == 1:  # pyright: ignore[reportAttributeAccessIssue]
            series[name] = column[0].as_py()
    return series


async def _series_absent(
    conn: asyncpg.Connection, plan: _Plan, series: dict[str, Any], args: tuple
) -> bool:
    """True when the target holds no row of ``series`` in the time range ``args``."""
    assert plan.time_key is not None
    conditions = [f"{quote_ident(c)} = ${i + 3}" for i, c in enumerate(series)]
    conditions.append(f"{quote_ident(plan.time_key)} BETWEEN $1 AND $2")
    probe = (
        f"SELECT EXISTS (SELECT 1 FROM {qualified(plan.table)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)})"
    )
    return not await conn.fetchval(probe, *args, *series.values())


async def _copy_if_series_absent(
    conn: asyncpg.Connection, plan: _Plan, series: dict[str, Any], args: tuple, payload: bytes
) -> str:
    """COPY the chunk straight into the target when the target holds nothing of its series in
    its time range (one index probe), which is the common case of new data: no staging, no
    merge. A writer racing us makes the COPY hit a unique violation; the savepoint undoes it
    and the caller takes the staged path. Returns "copy" (written), "taken" (the series has
    rows in the range) or "copy_conflict" (a racer's rows made the COPY fail)."""
    if not await _series_absent(conn, plan, series, args):
        return "taken"
    schema, _, name = plan.table.rpartition(".")
    try:
        async with conn.transaction():
            await conn.copy_to_table(
                name,
                schema_name=schema or None,
                source=_one(payload),
                columns=plan.names,
                format="binary",
            )
    except asyncpg.UniqueViolationError:
        return "copy_conflict"
    return "copy"


def _time_range(piece: pa.Table, time_key: str | None) -> tuple:
    if time_key is None:
        return ()
    column = piece.column(time_key)
    return (pc.min(column).as_py(), pc.max(column).as_py())  # pyright: ignore[reportAttributeAccessIssue]


async def _merge(
    conn: asyncpg.Connection, plan: _Plan, args: tuple, payload: bytes, n_rows: int
) -> tuple[int, int]:
    """Move the staged chunk into the target; returns (inserted, updated).

    PostgreSQL's ``INSERT … ON CONFLICT`` uses speculative insertion for every row, which
    measured 2-2.5x slower than a plain COPY on a million candles, so it is the last resort:
    1. ``UPDATE`` the rows whose values changed (update mode only);
    2. count the staged keys the target already has (hash anti-join over the staged time
       range, so only those hypertable chunks are read);
    3. none: COPY the same payload straight into the target (heap multi-insert, the speed of
       a raw COPY); some: ``INSERT … SELECT`` the missing ones with an anti-join;
    4. a writer racing us on the same keys makes 3 hit a unique violation: the savepoint rolls
       the chunk back and ``INSERT … ON CONFLICT`` redoes it, which is always correct.
    """
    # Row-count statistics steer the planner to a hash anti-join instead of a million probes.
    await conn.execute(f"ANALYZE {quote_ident(plan.stage)}")
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            updated = 0
            update = plan.update_sql()
            if update is not None:
                updated = _count(await conn.execute(update, *args))
            if plan.provenance is None:
                present = await conn.fetchval(plan.count_present_sql(), *args)
            else:
                counts = await conn.fetchrow(plan.count_present_sql(), *args)
                assert counts is not None
                present = counts["present"]
                if counts["foreign"]:  # rows another writer stored: do we assert them too?
                    await conn.execute(plan.corroborate_sql(), *args)
            if present == 0:
                schema, _, name = plan.table.rpartition(".")
                await conn.copy_to_table(
                    name,
                    schema_name=schema or None,
                    source=_one(payload),
                    columns=plan.names,
                    format="binary",
                )
                return n_rows, updated
            if present == n_rows:  # a re-run: everything is there already
                return 0, updated
            inserted = _count(await conn.execute(plan.insert_new_sql(), *args))
            return inserted, updated
    except asyncpg.UniqueViolationError:
        row = await conn.fetchrow(plan.upsert_sql())
        assert row is not None
        return row["inserted"], row["updated"]


def _count(status: str) -> int:
    """Rows affected, from a command tag such as 'INSERT 0 42' or 'UPDATE 7'."""
    return int(status.rsplit(" ", 1)[-1])


async def _one(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


async def _chunks(columns: list[PgColumn], table: pa.Table) -> AsyncIterator[bytes]:
    for piece in encode(columns, table):
        yield piece


async def copy_raw(conn: asyncpg.Connection, table: str, rows: pa.Table) -> int:
    """Plain binary COPY straight into ``table`` (no conflict handling): the benchmark baseline
    and the path for freshly created tables."""
    info = await table_info(conn, table)
    columns = [info.columns[c] for c in rows.column_names]
    await conn.copy_to_table(
        table.split(".")[-1],
        schema_name=table.split(".")[0] if "." in table else None,
        source=_chunks(columns, rows),
        columns=rows.column_names,
        format="binary",
    )
    return rows.num_rows
