"""Quoting of SQL identifiers; values always travel as query parameters, never in SQL text."""

from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def quote_ident(name: str) -> str:
    """``"name"`` with embedded quotes doubled; refuses empty names and NUL bytes."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    """``schema.table`` → ``"schema"."table"``; each part quoted on its own."""
    parts = table.split(".")
    if len(parts) > 2:
        raise ValueError(f"invalid table name {table!r}: expected schema.table")
    return ".".join(quote_ident(p) for p in parts)


def is_plain_identifier(name: str) -> bool:
    return bool(_SAFE.match(name))
