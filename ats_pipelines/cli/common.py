"""Shared CLI plumbing: one-line errors instead of tracebacks, structured logging."""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
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


# Libraries whose INFO lines are noise at default verbosity (Great Expectations logs a line per
# function it skips registering, Feast one per apply/materialise step); `-v` shows them.
LIBRARY_LOGGERS = ("alembic", "sqlalchemy", "great_expectations", "feast", "dagster")


class _NoDeprecations(logging.Filter):
    """Drops DeprecationWarnings that arrive as log records (Dagster routes warnings through
    logging, and its runs re-enable them whatever the process's warning filters say)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DeprecationWarning" not in record.getMessage()


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    if verbose:
        return
    for noisy in LIBRARY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("py.warnings").addFilter(_NoDeprecations())


def verbose_logging() -> bool:
    """Whether the command runs with ``-v`` (the root logger at DEBUG)."""
    return logging.getLogger().getEffectiveLevel() <= logging.DEBUG


def demo_logging() -> None:
    """`ats demo` at default verbosity: its summary says what each step did, so the steps' own
    INFO lines and Optuna's per-trial lines (its own handler, at INFO whatever logging's
    configuration says) show only with -v."""
    if verbose_logging():
        return
    import optuna

    logging.getLogger("ats_pipelines").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
