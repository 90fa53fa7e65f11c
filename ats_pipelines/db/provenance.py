"""Provenance: which writers asserted a market row, so that rolling a migration batch back
removes only what nobody else vouches for (sql/095_provenance.sql, README "Provenance").

A row's ``source``/``batch_id`` name the writer whose values it holds; a write that changes the
values takes the row over (its identity, ``asserted_by`` cleared). A writer meeting a stored row
with exactly its own values, written by someone else, adds its label (``source`` or
``source#batch_id``) to ``asserted_by``. The bulk writer does both in the statements it runs
anyway, plus one UPDATE only when a chunk meets rows of another writer; new rows cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ats_pipelines.db.sqlid import qualified, quote_ident

PROVENANCE = "asserted_by"
# Who wrote a row and when: never part of the values a writer asserts.
BOOKKEEPING = frozenset({"source", "batch_id", PROVENANCE, "ingested_at", "received_at"})


@dataclass(frozen=True)
class Provenance:
    """The SQL of recording assertions, for a writer whose rows carry ``source`` (and maybe
    ``batch_id``); ``values`` are the columns a writer asserts (compared for equality)."""

    values: Sequence[str]
    has_batch: bool

    def _batch(self, alias: str) -> str:
        return f"{alias}.batch_id" if self.has_batch or alias == "EXCLUDED" else "NULL::bigint"

    def label(self, alias: str) -> str:
        """'source' or 'source#batch_id' of the writer of row ``alias``."""
        return f"({alias}.source || coalesce('#' || {self._batch(alias)}, ''))"

    def same_writer(self, alias: str) -> str:
        return f"t.source = {alias}.source AND t.batch_id IS NOT DISTINCT FROM {self._batch(alias)}"

    def same_values(self, alias: str) -> str:
        if not self.values:
            return "true"
        old = ", ".join(f"t.{quote_ident(c)}" for c in self.values)
        new = ", ".join(f"{alias}.{quote_ident(c)}" for c in self.values)
        return f"ROW({old}) IS NOT DISTINCT FROM ROW({new})"

    def corroborates(self, alias: str) -> str:
        """Row ``t`` holds ``alias``'s values, from another writer not yet listed."""
        listed = f"{self.label(alias)} = ANY(coalesce(t.{PROVENANCE}, '{{}}'))"
        return f"{self.same_values(alias)} AND NOT ({self.same_writer(alias)}) AND NOT {listed}"

    def corroborate(self, alias: str) -> str:
        return f"{PROVENANCE} = array_append(coalesce(t.{PROVENANCE}, '{{}}'), {self.label(alias)})"

    def takeover(self, alias: str) -> str:
        """SET list of a value-changing write: the writer's identity, nobody else asserting."""
        return f"source = {alias}.source, batch_id = {self._batch(alias)}, {PROVENANCE} = NULL"

    def on_conflict(self, targets: Sequence[str]) -> str:
        """``DO UPDATE`` of ``INSERT … ON CONFLICT``: change values (``targets``, update mode)
        and take the row over, or corroborate equal values; otherwise leave the row alone."""
        if targets:
            old = ", ".join(f"t.{quote_ident(c)}" for c in targets)
            new = ", ".join(f"EXCLUDED.{quote_ident(c)}" for c in targets)
            changed = f"ROW({old}) IS DISTINCT FROM ROW({new})"
        else:
            changed = "false"
        sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in targets]
        sets += [
            f"source = CASE WHEN {changed} THEN EXCLUDED.source ELSE t.source END",
            f"batch_id = CASE WHEN {changed} THEN EXCLUDED.batch_id ELSE t.batch_id END",
            f"{PROVENANCE} = CASE WHEN {changed} THEN NULL ELSE "
            f"array_append(coalesce(t.{PROVENANCE}, '{{}}'), {self.label('EXCLUDED')}) END",
        ]
        return (
            f"DO UPDATE SET {', '.join(sets)} WHERE {changed} OR ({self.corroborates('EXCLUDED')})"
        )


async def retract_batch(
    conn: asyncpg.Connection,
    table: str,
    batch_id: int,
    series: dict[str, str | None],
    between: tuple[datetime, datetime] | None = None,
) -> tuple[int, int]:
    """Withdraw batch ``batch_id``'s assertions from ``table`` (rows of ``series``, a column ->
    value filter where None means any): its rows nobody else asserted are deleted; its rows
    others asserted are handed to the first of them (values untouched); it leaves the
    ``asserted_by`` lists it is on. Returns (deleted, handed over)."""
    names = list(series)
    scope = " AND ".join(
        f"(${i + 2}::text IS NULL OR {quote_ident(c)} = ${i + 2})" for i, c in enumerate(names)
    )
    args = [batch_id, *series.values()]
    target = qualified(table)
    deleted = await conn.execute(
        f"DELETE FROM {target} WHERE batch_id = $1 AND {PROVENANCE} IS NULL AND {scope}",  # noqa: S608
        *args,
    )
    handed = await conn.execute(
        f"UPDATE {target} SET "  # noqa: S608
        f"source = regexp_replace({PROVENANCE}[1], '#[0-9]+$', ''), "
        f"batch_id = substring({PROVENANCE}[1] from '#([0-9]+)$')::bigint, "
        f"{PROVENANCE} = CASE WHEN cardinality({PROVENANCE}) > 1 "
        f"THEN {PROVENANCE}[2:] END "
        f"WHERE batch_id = $1 AND {PROVENANCE} IS NOT NULL AND {scope}",
        *args,
    )
    window = ""
    if between is not None:
        window = f" AND ts BETWEEN ${len(args) + 1} AND ${len(args) + 2}"
        args += list(between)
    mine = "a LIKE '%#' || $1::bigint::text"
    await conn.execute(
        f"UPDATE {target} SET {PROVENANCE} = "  # noqa: S608
        f"(SELECT array_agg(a) FROM unnest({PROVENANCE}) a WHERE NOT ({mine})) "
        f"WHERE {scope}{window} AND {PROVENANCE} IS NOT NULL "
        f"AND EXISTS (SELECT 1 FROM unnest({PROVENANCE}) a WHERE {mine})",
        *args,
    )
    return _count(deleted), _count(handed)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
