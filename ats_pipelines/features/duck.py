"""DuckDB connections the way this project uses them: UTC, and never an extension download."""

from __future__ import annotations

import duckdb

# Built into the Python wheel (checked: core_functions, icu, json, parquet): nothing to install,
# and autoloading is off so a query can never reach the network for an extension.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the session time zone at UTC."""
    config: dict[str, str | bool | int | float | list[str]] = dict(_CONFIG)
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def sql_string(value: str) -> str:
    """A SQL string literal, for the places DuckDB takes no parameter (file lists in views)."""
    return "'" + value.replace("'", "''") + "'"
