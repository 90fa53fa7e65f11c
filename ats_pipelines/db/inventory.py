"""What the database holds: tables per schema with row counts, for reports and the demo."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ats_pipelines.db.sqlid import qualified

PLATFORM_SCHEMAS = ("market", "ml", "signals", "ops")


@dataclass(frozen=True)
class TableSummary:
    schema: str
    name: str
    rows: int
    hypertable: bool

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


async def table_summaries(conn: asyncpg.Connection) -> list[TableSummary]:
    has_ts = await conn.fetchval(
        "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'timescaledb'"
    )
    hypertables: set[tuple[str, str]] = set()
    if has_ts:
        rows = await conn.fetch(
            "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
        )
        hypertables = {(r[0], r[1]) for r in rows}
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE' "
        "ORDER BY table_schema, table_name",
        list(PLATFORM_SCHEMAS),
    )
    out = []
    for t in tables:
        name = f"{t['table_schema']}.{t['table_name']}"
        count = await conn.fetchval(f"SELECT count(*) FROM {qualified(name)}")  # noqa: S608
        out.append(
            TableSummary(
                t["table_schema"],
                t["table_name"],
                int(count or 0),
                (t["table_schema"], t["table_name"]) in hypertables,
            )
        )
    return out


def markdown_table(summaries: list[TableSummary]) -> str:
    lines = ["| table | rows | hypertable |", "|---|---:|---|"]
    lines += [
        f"| {s.qualified_name} | {s.rows:,} | {'yes' if s.hypertable else 'no'} |"
        for s in summaries
    ]
    return "\n".join(lines)
