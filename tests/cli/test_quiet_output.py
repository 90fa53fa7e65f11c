"""`ats` commands (and `make demo`) at default verbosity show the platform's lines, not the
libraries' noise: Dagster's per-event DEBUG lines, Great Expectations' "Skipping registering
function" lines, Feast's INFO lines, Optuna's per-trial lines and DeprecationWarnings (and, in
the demo, the steps' own INFO lines its summary repeats) appear only with ``-v``."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys, warnings
from ats_pipelines.cli.common import configure_logging, demo_logging
configure_logging(sys.argv[1] == "verbose")
demo_logging()  # what `ats demo` adds
import dagster as dg
import great_expectations  # logs a line per public function it skips registering (INFO)
from ats_pipelines.demo import _materialize
logging.getLogger("feast.repo_operations").info("feast says hello")
warnings.warn("an old API", DeprecationWarning)
import optuna
optuna.create_study().optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
logging.getLogger("ats_pipelines.warehouse").info("event=step_detail only with -v")

@dg.resource
def old_style(context):  # InitResourceContext.dagster_run: a DeprecationWarning inside the run
    return context.dagster_run.run_id

@dg.asset(required_resource_keys={"old_style"})
def tiny() -> int:
    return 1

with dg.DagsterInstance.ephemeral() as instance:
    assert _materialize([tiny], instance=instance, resources={"old_style": old_style}).success
print("== the demo's summary line")
"""
NOISE = (
    " - DEBUG - ",  # Dagster's console logger, one line per event
    "Skipping registering function",
    "feast says hello",
    "DeprecationWarning",
    "Trial 0 finished",  # Optuna's INFO lines, through its own handler
    "event=step_detail",  # the steps' own INFO lines: the demo's summary says it
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
    assert "== the demo's summary line" in output
    shown = [noise for noise in NOISE if noise in output]
    if mode == "quiet":
        assert shown == [], [line for line in output.splitlines() if any(n in line for n in NOISE)][
            :5
        ]
    else:
        assert shown == list(NOISE)  # the test can see each kind of noise when it is there
