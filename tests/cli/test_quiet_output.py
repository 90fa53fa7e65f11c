"""`ats` commands (and `make demo`) at default verbosity show the platform's lines, not the
libraries' noise: Dagster's per-event DEBUG lines, Great Expectations' "Skipping registering
function" lines, Feast's INFO lines and DeprecationWarnings appear only with ``-v``."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys, warnings
from ats_pipelines.cli.common import configure_logging
configure_logging(sys.argv[1] == "verbose")
import dagster as dg
import great_expectations  # logs a line per public function it skips registering (INFO)
from ats_pipelines.demo import _materialize
logging.getLogger("feast.repo_operations").info("feast says hello")
warnings.warn("an old API", DeprecationWarning)

@dg.asset
def tiny() -> int:
    return 1

with dg.DagsterInstance.ephemeral() as instance:
    assert _materialize([tiny], instance=instance).success
logging.getLogger("ats_pipelines.demo").info("event=demo_step ours")
"""
NOISE = (
    " - DEBUG - ",  # Dagster's console logger, one line per event
    "Skipping registering function",
    "feast says hello",
    "DeprecationWarning",
)


def _output(mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_library_noise_only_with_verbose(mode: str) -> None:
    output = _output(mode)
    assert "event=demo_step ours" in output  # the platform's own lines stay
    shown = [noise for noise in NOISE if noise in output]
    if mode == "quiet":
        assert shown == [], [line for line in output.splitlines() if any(n in line for n in NOISE)][
            :5
        ]
    else:
        assert shown == list(NOISE)  # the test can see each kind of noise when it is there
