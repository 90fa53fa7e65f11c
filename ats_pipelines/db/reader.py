"""The read-only role for analysts and BI tools (``ats_reader``): SELECT on every table and
view of the platform's schemas, now and later, nothing else. Granted by the migration runner
after each run, by whoever owns the tables; absent role, nothing to do (an external server
where no one made it: create it, then run ``ats db migrate`` again)."""

from __future__ import annotations

import logging

import asyncpg

from ats_pipelines.config import READER_DB_USER
from ats_pipelines.db.sqlid import quote_ident

log = logging.getLogger(__name__)
READER_SCHEMAS = ("market", "ml", "signals", "ops")


async def grant_reader(conn: asyncpg.Connection, role: str = READER_DB_USER) -> bool:
    """Grant ``role`` read access to the platform's schemas; False when the role is absent."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        log.info("event=reader_role_absent role=%s", role)
        return False
    present = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY 1",
        list(READER_SCHEMAS),
    )
    who = quote_ident(role)
    for record in present:
        schema = quote_ident(record["nspname"])
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {who}")
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {who}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {who}"
        )
    return True
