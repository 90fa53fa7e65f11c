"""The container files (Dockerfile, compose.yaml, Railway's config) agree with the code: no
container daemon or registry is reachable here, so what can be checked is checked — every
variable they set is one a config loader reads, every command they run exists with the options
given, and ports and health checks are the production layout's (ats_pipelines.deploy.layout)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
import yaml

from ats_pipelines.config import load_settings, project_root
from ats_pipelines.deploy.layout import spec

ROOT = project_root()
APP_SERVICES = ("migrate", "code-server", "webserver", "daemon", "stream")
# Read by the software in the image rather than by this project's config modules.
THIRD_PARTY = {
    "PATH": "the shell",
    "PYTHONUNBUFFERED": "Python: logs reach the container log at once",
    "DAGSTER_TELEMETRY_DISABLED": "Dagster",
    "FEAST_USAGE": "Feast",
    "GX_ANALYTICS_ENABLED": "Great Expectations",
}
# Set on the official images (not ours), read by their entrypoints.
IMAGE_VARIABLES = {
    "timescaledb": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "redis": {"REDISCLI_AUTH"},
}
ENV_READ = re.compile(
    r"""(?:env|environ)(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|EnvVar\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|_port\(\s*env,\s*["']([A-Z][A-Z0-9_]+)["']"""
)


@cache
def variables_read() -> frozenset[str]:
    """Names the config loaders read: ``env.get("X")``, ``env["X"]``, ``EnvVar("X")`` in the
    package, quoted names in config modules' tuples, and ``{env: X}`` / ``${X}`` in the
    Dagster and Feast files."""
    names: set[str] = set()
    for path in (ROOT / "ats_pipelines").rglob("*.py"):
        text = path.read_text()
        names |= {n for match in ENV_READ.findall(text) for n in match if n}
        if path.name == "config.py":
            names |= set(re.findall(r'"((?:ATS_|DATABASE_)[A-Z0-9_]+)"', text))
    for name in ("dagster.yaml", "workspace.grpc.yaml"):
        names |= set(re.findall(r"env:\s*([A-Z][A-Z0-9_]+)", (ROOT / name).read_text()))
    prod_yaml = (ROOT / "feature_repo" / "feature_store.prod.yaml").read_text()
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)\}", prod_yaml))
    return frozenset(names)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile_runtime_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return env


def railway_files() -> dict[str, dict[str, Any]]:
    paths = [ROOT / "railway.json", *sorted((ROOT / "deploy" / "railway").glob("*.json"))]
    return {p.name: json.loads(p.read_text()) for p in paths}


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command the files run in our image."""
    found: list[tuple[str, list[str]]] = []
    for name in APP_SERVICES:
        service = compose()["services"][name]
        found.append((f"compose {name}", service["command"]))
        if "healthcheck" in service:
            found.append((f"compose {name} healthcheck", service["healthcheck"]["test"][1:]))
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    found.append(("Dockerfile CMD", json.loads(cmd.group(1))))
    for name, doc in railway_files().items():
        deploy = doc["deploy"]
        found.append((f"{name} startCommand", shlex.split(deploy["startCommand"])))
        for pre in deploy.get("preDeployCommand", []):
            found.append((f"{name} preDeployCommand", shlex.split(pre)))
    return found


def test_every_variable_the_files_set_is_read_by_a_config_loader() -> None:
    read = variables_read() | THIRD_PARTY.keys()
    assert {"ATS_DATABASE_URL", "DATABASE_URL", "ATS_CODE_SERVER_PORT"} <= read
    env = compose()["services"]["webserver"]["environment"]
    unread = {f"compose: {k}" for k in env if k not in read}
    unread |= {f"Dockerfile: {k}" for k in dockerfile_runtime_env() if k not in read}
    for name, service in compose()["services"].items():
        if name in IMAGE_VARIABLES:
            unread |= {f"{name}: {k}" for k in service.get("environment", {})} - {
                f"{name}: {k}" for k in IMAGE_VARIABLES[name]
            }
    assert not unread


def test_the_compose_environment_loads_and_names_the_layout_ports() -> None:
    env = {k: str(v) for k, v in compose()["services"]["webserver"]["environment"].items()}
    settings = load_settings(env)  # no ConfigError: every value is well-formed
    assert not settings.managed_database and not settings.managed_redis
    web = compose()["services"]["webserver"]
    assert web["ports"] == [f"{settings.webserver_port}:{settings.webserver_port}"]
    assert compose()["services"]["code-server"]["expose"] == [str(settings.code_server_port)]
    assert settings.code_server_host == "code-server"  # the service name is its host name
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed is not None
    assert {str(settings.webserver_port), str(settings.code_server_port)} <= set(
        exposed.group(1).split()
    )


@pytest.mark.parametrize("role", ["code-server", "webserver", "daemon"])
def test_each_dagster_service_runs_and_checks_its_layout_role(role: str) -> None:
    service = compose()["services"][role]
    assert service["command"][:3] == ["ats", "serve", role]
    assert service["healthcheck"]["test"] == ["CMD", "ats", "serve", "check", role]
    assert service["restart"] == "unless-stopped"


def test_stream_service_is_restarted_and_checked_on_its_metrics_port() -> None:
    stream = compose()["services"]["stream"]
    port = stream["command"][stream["command"].index("--metrics-port") + 1]
    assert stream["healthcheck"]["test"][-2:] == ["--metrics-port", port]
    assert stream["restart"] == "unless-stopped"


def test_railway_webserver_health_check_is_the_layouts() -> None:
    settings = load_settings({})
    url = spec(settings, "webserver").health_url
    assert url is not None
    assert url.endswith(railway_files()["railway.json"]["deploy"]["healthcheckPath"])


def _help(argv: list[str]) -> str:
    assert argv[0] == "ats", f"{argv}: not a command of this image"
    path = [a for a in argv[1:] if not a.startswith("-")]
    proc = subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, (argv, proc.stderr)
    return proc.stdout


def test_every_command_exists_and_takes_the_options_given() -> None:
    for where, argv in commands():
        text = _help(argv)
        for option in (a for a in argv if a.startswith("--")):
            assert option in text, f"{where}: {option} is not an option of {' '.join(argv)}"
