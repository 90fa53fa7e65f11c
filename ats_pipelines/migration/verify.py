"""Verification of a loaded file against its source: counts, time range and content checksum.

The database side covers every key of the file: the rows its batch inserted (found by
``batch_id``) plus the rows that already existed and were kept (their keys were recorded in a
session temp table while loading, only for chunks where the writer skipped rows). So a file
whose values disagree with rows already in the database fails verification instead of being
declared loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import polars as pl

from ats_pipelines.db.bulk import copy_raw
from ats_pipelines.db.sqlid import qualified, quote_ident
from ats_pipelines.migration.checksum import Digest, db_digest, select_list
from ats_pipelines.migration.datasets import DatasetSpec
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.pipeline import SourceStats


def keys_table(spec: DatasetSpec) -> str:
    return f"_ats_migration_keys_{spec.name}"


async def reset_keys(conn: asyncpg.Connection, spec: DatasetSpec) -> None:
    """A session temp table for the keys of rows that already existed (survives the commit)."""
    cols = ", ".join(
        f"{quote_ident(k)} {'timestamptz' if k == 'ts' else 'text'} NOT NULL" for k in spec.key
    )
    name = quote_ident(keys_table(spec))
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols})")
    await conn.execute(f"TRUNCATE {name}")


async def add_keys(conn: asyncpg.Connection, spec: DatasetSpec, frame: pl.DataFrame) -> None:
    await copy_raw(conn, keys_table(spec), frame.select(spec.key).to_arrow())


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Verification:
    ok: bool
    loaded: Digest
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


async def verify_file(
    conn: asyncpg.Connection,
    file: DiscoveredFile,
    spec: DatasetSpec,
    batch_id: int,
    stats: SourceStats,
    inserted: int,
    existing: int,
) -> Verification:
    series = spec.series(file)
    where = " AND ".join(f"t.{quote_ident(k)} = ${i + 2}" for i, k in enumerate(series))
    select = select_list(spec.checksum, spec.text)
    table = qualified(spec.table)
    batch = await db_digest(
        conn,
        f"SELECT {select} FROM {table} t WHERE t.batch_id = $1 AND {where}",  # noqa: S608
        [batch_id, *series.values()],
        spec.checksum,
        spec.text,
    )
    kept = Digest()
    if existing:
        join = " AND ".join(f"t.{quote_ident(k)} = k.{quote_ident(k)}" for k in spec.key)
        kept = await db_digest(
            conn,
            f"SELECT {select} FROM {table} t JOIN {quote_ident(keys_table(spec))} k "  # noqa: S608
            f"ON {join} WHERE {where} AND t.batch_id IS DISTINCT FROM $1",
            [batch_id, *series.values()],
            spec.checksum,
            spec.text,
        )
    loaded = batch + kept
    source = stats.digest
    reasons = []
    if batch.count != inserted:
        reasons.append(f"the batch holds {batch.count} rows but the writer inserted {inserted}")
    if kept.count != existing:
        reasons.append(f"{existing} rows were reported present but {kept.count} were found")
    if loaded.count != source.count:
        reasons.append(f"row count differs: source {source.count}, database {loaded.count}")
    if (loaded.first_us, loaded.last_us) != (source.first_us, source.last_us):
        reasons.append(
            f"time range differs: source {iso(source.first_us)}..{iso(source.last_us)}, "
            f"database {iso(loaded.first_us)}..{iso(loaded.last_us)}"
        )
    if loaded.total != source.total:
        reasons.append(
            f"content checksum differs: source {source.checksum}, database {loaded.checksum}"
            + (" (rows already in the database hold other values)" if existing else "")
        )
    accounted = stats.rows_duplicate + inserted + existing
    if accounted != stats.rows_accepted:
        reasons.append(
            f"rows do not add up: accepted {stats.rows_accepted} != duplicate "
            f"{stats.rows_duplicate} + inserted {inserted} + existing {existing}"
        )
    details = {
        "source_rows": source.count,
        "loaded_rows": loaded.count,
        "batch_rows": batch.count,
        "existing_rows": kept.count,
        "source_checksum": source.checksum,
        "loaded_checksum": loaded.checksum,
        "source_first": iso(source.first_us),
        "source_last": iso(source.last_us),
        "loaded_first": iso(loaded.first_us),
        "loaded_last": iso(loaded.last_us),
    }
    if stats.grid is not None:
        details["grid"] = stats.grid.report()
    return Verification(not reasons, loaded, reasons, details)
