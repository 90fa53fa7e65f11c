"""What the Dagster assets and sensor of ``defs/migration`` do, kept out of the defs folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.migration import ledger
from ats_pipelines.migration.discovery import DiscoveredFile, Discovery
from ats_pipelines.migration.loader import FileMigrator, FileOutcome
from ats_pipelines.migration.report import ReportData, md_table, to_markdown, write_report
from ats_pipelines.migration.runner import ensure_schema
from ats_pipelines.orchestration.resources.legacy_cache import LegacyCacheResource

PARTITIONS = "legacy_cache_files"
_INVALID = ("...", "\n", "\r", "\t", "\0")


def partition_keys(discovery: Discovery) -> list[str]:
    """Partition keys of the discovered files (Dagster refuses a few substrings in keys)."""
    return [f.relative for f in discovery.files if not any(s in f.relative for s in _INVALID)]


def file_signature(file: DiscoveredFile) -> str:
    stat = file.path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def ledger_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The ledger row as asset metadata: counts as numbers, the whole row as JSON."""
    verification = row.get("verification") or {}
    grid = verification.get("grid") or {}
    meta: dict[str, Any] = {
        "batch_id": row.get("batch_id"),
        "status": row.get("status"),
        "file": row.get("file_path"),
        "dataset": row.get("dataset"),
        "symbol": row.get("symbol"),
        "timeframe": row.get("timeframe") or "-",
        "first_ts": row.get("first_ts") or "-",
        "last_ts": row.get("last_ts") or "-",
        "checksums_match": bool(row.get("loaded_checksum"))
        and row.get("loaded_checksum") == row.get("source_checksum"),
        "ledger_row": dg.MetadataValue.json(json.loads(json.dumps(row, default=str))),
    }
    for key in (
        "rows_read",
        "rows_accepted",
        "rows_quarantined",
        "rows_duplicate",
        "rows_inserted",
        "rows_existing",
    ):
        meta[key] = int(row.get(key) or 0)
    if "missing" in grid:
        meta["missing_bars"] = int(grid["missing"])
    if row.get("error"):
        meta["error"] = str(row["error"])
    return meta


@dataclass
class PartitionResult:
    outcome: FileOutcome | None
    row: dict[str, Any] | None
    message: str

    @property
    def ok(self) -> bool:
        return self.row is not None and self.row.get("status") in ledger.DONE


async def migrate_partition(
    conn: asyncpg.Connection, legacy_cache: LegacyCacheResource, key: str
) -> PartitionResult:
    """Migrate the file of partition ``key``; a file already archived reports its ledger row."""
    await ensure_schema(conn)
    config = legacy_cache.migration_config()
    root = legacy_cache.root_path()
    path = root / key
    if not path.is_file():
        rows = await ledger.rows_for_path(conn, str(path))
        done = [r for r in rows if r["status"] in ledger.DONE]
        if done:
            row = ledger.as_dict(done[0])
            return PartitionResult(None, row, f"already {row['status']}")
        raise dg.Failure(f"{path} does not exist and has no verified ledger row")
    found = legacy_cache.identifier().identify(root, path)
    if not isinstance(found, DiscoveredFile):
        raise dg.Failure(f"{key}: {found.reason}")
    migrator = FileMigrator(conn, config, archive_dir=config.archive_dir)
    outcome = await migrator.migrate(found)
    row = outcome.ledger_row
    if row is None and outcome.batch_id is not None:
        record = await ledger.fetch(conn, outcome.batch_id)
        row = ledger.as_dict(record) if record else None
    return PartitionResult(outcome, row, outcome.message)


def inventory_markdown(discovery: Discovery) -> str:
    """Unmatched files as a Markdown table (shown on the inventory asset)."""
    rows = [(u.relative, u.reason) for u in discovery.unmatched]
    return md_table(("file", "reason"), rows) if rows else "(none)"


async def root_report(
    conn: asyncpg.Connection, discovery: Discovery, reports_dir: Path
) -> tuple[list[Path], str]:
    """The migration report of everything the ledger holds for this root (files + md)."""
    rows = [ledger.as_dict(r) for r in await ledger.list_rows(conn, root=str(discovery.root))]
    data = ReportData(
        title=f"Legacy cache migration: {discovery.root}",
        meta=[
            ("root", str(discovery.root)),
            ("files found now", str(len(discovery.files))),
            ("written", datetime.now(UTC).isoformat(timespec="seconds")),
        ],
        rows=rows,
        unmatched=[(u.relative, u.reason) for u in discovery.unmatched],
    )
    paths = write_report(data, reports_dir, "root-" + discovery.root.name)
    return paths, to_markdown(data)
