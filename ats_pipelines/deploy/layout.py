"""The production process layout: what each process runs, with which environment, and how its
health is checked. One definition serves ``ats serve …`` (a process in the foreground, as a
container runs it), ``ats prod up`` (all of them on this machine) and the container files.

    code-server   dagster api grpc -m ats_pipelines.definitions   (runs launched as its children)
    webserver     dagster-webserver -w workspace.grpc.yaml          (UI + GraphQL)
    daemon        dagster-daemon run -w workspace.grpc.yaml         (queue, schedules, sensors,
                                                                     run monitoring, run retries)
    stream        ats stream --shard i/n   (containers; `ats prod up` runs it as a Dagster run)
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ats_pipelines.cli.dagster_cmd import NO_TELEMETRY, dagster_home, dagster_storage_url
from ats_pipelines.config import Settings, project_root

LOCATION = "ats_pipelines"
MODULE = "ats_pipelines.definitions"
WORKSPACE = "workspace.grpc.yaml"
ROLES = ("code-server", "webserver", "daemon")


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the layout: its command line and how to tell it is healthy."""

    role: str
    argv: list[str]
    health: list[str] | None = None  # a command that exits 0 when healthy
    health_url: str | None = None  # or an HTTP endpoint that answers 200


def _tool(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name) or name


def process_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every Dagster process of the layout runs with."""
    env = dict(os.environ if base is None else base)
    env.update(NO_TELEMETRY)
    env["DAGSTER_HOME"] = str(dagster_home(settings))
    env["ATS_DAGSTER_PG_URL"] = dagster_storage_url(settings)
    env["ATS_CODE_SERVER_HOST"] = settings.code_server_host
    env["ATS_CODE_SERVER_PORT"] = str(settings.code_server_port)
    return env


def spec(settings: Settings, role: str, *, bind: str = "127.0.0.1") -> ProcessSpec:
    """The process of ``role`` (one of :data:`ROLES`); ``bind`` is the listening address."""
    workspace = str(project_root() / WORKSPACE)
    if role == "code-server":
        port = str(settings.code_server_port)
        argv = [_tool("dagster"), "api", "grpc", "-m", MODULE, "--location-name", LOCATION]
        argv += ["-h", bind, "-p", port, "--working-directory", str(project_root())]
        host = settings.code_server_host
        check = [_tool("dagster"), "api", "grpc-health-check", "-h", host, "-p", port]
        return ProcessSpec(role, argv, health=check)
    if role == "webserver":
        port = str(settings.webserver_port)
        argv = [_tool("dagster-webserver"), "-w", workspace, "-h", bind, "-p", port]
        return ProcessSpec(role, argv, health_url=f"http://127.0.0.1:{port}/server_info")
    if role == "daemon":
        argv = [_tool("dagster-daemon"), "run", "-w", workspace]
        return ProcessSpec(role, argv, health=[_tool("dagster-daemon"), "liveness-check"])
    raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def http_ok(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False
