"""Shared CLI plumbing: one-line errors instead of tracebacks, structured logging."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer

from ats_pipelines.config import ConfigError
from ats_pipelines.db.backup import BackupError
from ats_pipelines.db.cluster import ClusterError
from ats_pipelines.db.connect import DatabaseUnavailable
from ats_pipelines.db.migrate import MigrationError

T = TypeVar("T")
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    BackupError,
    ClusterError,
    DatabaseUnavailable,
    MigrationError,
)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def run(fn: Callable[[], Awaitable[T]] | Callable[[], T]) -> T:
    """Run a command body; expected failures become one clear line and exit code 1."""
    try:
        result = fn()
        if asyncio.iscoroutine(result):
            return asyncio.run(result)
        return result  # type: ignore[return-value]
    except EXPECTED_ERRORS as exc:
        fail(str(exc))


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for noisy in ("alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
