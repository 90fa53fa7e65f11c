"""The code location is called ``ats_pipelines`` wherever it is loaded from, whatever the
checkout's folder is called (Dagster names a project after its folder unless told otherwise,
and then warns on every load that the name does not match the workspace's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from ats_pipelines.cli.dagster_cmd import NO_TELEMETRY
from ats_pipelines.config import project_root
from ats_pipelines.deploy.graphql import DagsterWebClient
from ats_pipelines.deploy.layout import LOCATION, spec

NAME = "ats_pipelines"
MISMATCH = "does not match the name"


def _workspace_names(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    return [next(iter(entry.values()))["location_name"] for entry in doc["load_from"]]


def test_every_entry_point_names_the_location_ats_pipelines(settings) -> None:
    import dagster as dg

    tree = dg.ComponentTree.for_project(project_root() / "ats_pipelines" / "definitions.py")
    assert tree.code_location_name == NAME  # not the checkout folder's name
    assert _workspace_names(project_root() / "workspace.yaml") == [NAME]
    assert _workspace_names(project_root() / "workspace.grpc.yaml") == [NAME]
    assert LOCATION == NAME
    argv = spec(settings, "code-server").argv
    assert argv[argv.index("--location-name") + 1] == NAME
    assert DagsterWebClient(3000).location == NAME


def test_loading_the_workspace_warns_of_no_name_mismatch(tmp_path: Path) -> None:
    """What the webserver and daemon do on every load: no warning about the name."""
    env = {**os.environ, **NO_TELEMETRY, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = str(Path(sys.executable).parent / "dagster")
    done = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert f"Validation successful for code location {NAME}." in output
    assert MISMATCH not in output, [line for line in output.splitlines() if MISMATCH in line][:1]
