"""What the local profile needs before the Dagster UI starts (``make ui``, ``ats dagster ui``):
the database, migrated, with Dagster's storage; the hot cache; and, when no exchange URL is set,
the project's exchange emulator as the local exchange. Nothing has to be started by hand.

The production profile (``ATS_ENV=prod``) never starts an emulator: its exchange is the real
one (or ``ATS_EXCHANGE_URL``). ``ATS_EXCHANGE_URL`` set in any profile means that exchange is
used as given and nothing is started for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ats_pipelines.config import Settings
from ats_pipelines.universe import EMULATOR_URL

log = logging.getLogger(__name__)

# How the code location learns who started its exchange (shown on the exchange resource).
ORIGIN_VAR = "ATS_EXCHANGE_ORIGIN"
EMULATOR_PORT = int(EMULATOR_URL.rsplit(":", 1)[1])  # the address the local profile names


@dataclass
class LocalServices:
    """What was brought up: a line per step, and the variables the UI's processes need."""

    lines: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    emulator: Any = None  # the running Emulator, when one was started


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def exchange_origin(ats_env: str, environ: Mapping[str, str]) -> str:
    """Where the exchange resource points, in words (what the UI and the run log show)."""
    if environ.get(ORIGIN_VAR):
        return environ[ORIGIN_VAR]
    url = environ.get("ATS_EXCHANGE_URL")
    if url:
        return f"ATS_EXCHANGE_URL ({url})"
    if ats_env == "prod":
        return "the exchange's own hosts (production profile)"
    return (
        f"the project's exchange emulator at {EMULATOR_URL} (local profile default; "
        "`make ui` / `ats dagster ui` start it, or `ats emulator`)"
    )


def wants_emulator(ats_env: str, environ: Mapping[str, str]) -> bool:
    """True when the UI should start the emulator: a local/test profile without an exchange
    URL. Never in production."""
    return ats_env != "prod" and not environ.get("ATS_EXCHANGE_URL")


def _start_emulator(stack: ExitStack) -> Any:
    """The emulator on its usual port (127.0.0.1:8765), or any free one when that is taken."""
    from ats_pipelines.emulator.server import EmulatorConfig
    from ats_pipelines.emulator.testing import emulator_in_thread

    ports = [EMULATOR_PORT, 0] if _port_free(EMULATOR_PORT) else [0]
    for port in ports:
        try:
            return stack.enter_context(emulator_in_thread(EmulatorConfig(port=port)))
        except OSError:  # taken between the probe and the bind: any free port then
            if port == 0:
                raise
    raise AssertionError("unreachable")


def _prepare_storage(settings: Settings) -> list[str]:
    from ats_pipelines.cache.server import ensure_redis
    from ats_pipelines.cli.dagster_cmd import prepare_instance
    from ats_pipelines.cli.db import ensure_up, migrate_database

    lines = ensure_up(settings)
    report = asyncio.run(migrate_database(settings))
    lines.append(
        f"database migrated ({report.edition}): {len(report.applied)} applied, "
        f"{len(report.unchanged)} already recorded"
    )
    lines += asyncio.run(prepare_instance(settings))
    lines.append(ensure_redis(settings))
    return lines


@contextmanager
def local_services(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Iterator[LocalServices]:
    """Bring up what the profile needs for the UI; an emulator started here stops on exit."""
    environ = os.environ if environ is None else environ
    services = LocalServices(lines=_prepare_storage(settings))
    with ExitStack() as stack:
        if wants_emulator(settings.ats_env, environ):
            emulator = _start_emulator(stack)
            origin = (
                f"the project's exchange emulator at {emulator.rest_url}, started by `ats "
                f"dagster ui` ({settings.ats_env} profile, ATS_EXCHANGE_URL not set)"
            )
            services.emulator = emulator
            services.env = {"ATS_EXCHANGE_URL": emulator.rest_url, ORIGIN_VAR: origin}
            services.lines.append(
                f"exchange: {origin}; set ATS_EXCHANGE_URL to use another exchange"
            )
            log.info("event=local_exchange url=%s started=emulator", emulator.rest_url)
        else:
            services.lines.append(
                f"exchange: {exchange_origin(settings.ats_env, environ)} (no emulator started)"
            )
        yield services
