"""Row counts and content checksums of every table of the platform, to prove a copy complete.

A table's checksum is the sum of a 64-bit hash of each row's text form: independent of row order
and physical layout (chunks, pages), so a dump restored elsewhere fingerprints the same. The text
form is pinned by session settings (time zone, date style, float digits) that would otherwise
change it. Hypertables are counted through their parent; chunks are not listed on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ats_pipelines.db.sqlid import qualified

# Schemas that belong to PostgreSQL or to the TimescaleDB extension itself (its catalog is
# restored with the extension, its chunks are counted through their hypertables).
SYSTEM_SCHEMA_SQL = """
    n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT LIKE '\\_timescaledb%'
    AND n.nspname NOT IN ('information_schema', 'timescaledb_information',
                          'timescaledb_experimental', 'toolkit_experimental')
"""
TABLES_SQL = f"""
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {SYSTEM_SCHEMA_SQL}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""  # noqa: S608 - constants only
TEXT_FORM_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
)


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str

    def to_json(self) -> dict[str, int | str]:
        return {"rows": self.rows, "checksum": self.checksum}


async def user_tables(conn: asyncpg.Connection) -> list[str]:
    """``schema.table`` of every table outside PostgreSQL's and TimescaleDB's own schemas."""
    return [row[0] for row in await conn.fetch(TABLES_SQL)]


async def fingerprint(conn: asyncpg.Connection) -> dict[str, TableFingerprint]:
    """Row count and checksum of every user table, as seen by ``conn``'s snapshot."""
    for statement in TEXT_FORM_SETTINGS:
        await conn.execute(statement)
    result = {}
    for table in await user_tables(conn):
        row = await conn.fetchrow(
            "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text "  # noqa: S608 - a quoted catalog name
            f"FROM {qualified(table)} AS t"
        )
        assert row is not None  # an aggregate always returns one row
        result[table] = TableFingerprint(int(row[0]), str(row[1]))
    return result


def differences(
    expected: dict[str, TableFingerprint], actual: dict[str, TableFingerprint]
) -> list[str]:
    """One line per table that is missing, extra, or differs in rows or content."""
    lines = []
    for table in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(table), actual.get(table)
        if got is None:
            lines.append(f"{table}: missing after restore")
        elif want is None:
            lines.append(f"{table}: not in the backup")
        elif want.rows != got.rows:
            lines.append(f"{table}: {got.rows} rows, the backup holds {want.rows}")
        elif want.checksum != got.checksum:
            lines.append(f"{table}: same {got.rows} rows but different content")
    return lines
