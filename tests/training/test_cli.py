"""`ats retrain enqueue|list` against the real database."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from ats_pipelines.cli.main import app


def _cli(db: str, *args: str):
    env = {**os.environ, "ATS_DATABASE_URL": db, "ATS_ENV": "test"}
    return CliRunner().invoke(app, ["retrain", *args], env=env)


def test_enqueue_coalesce_and_list(clean_db: str) -> None:
    first = _cli(
        clean_db, "enqueue", "--reason", "new listing", "--priority", "4", "--scope", "btc"
    )
    assert first.exit_code == 0, first.output
    assert first.output.startswith("queued request ") and "priority 4" in first.output
    again = _cli(
        clean_db, "enqueue", "-r", "analyst asked", "-p", "1", "-s", "btc", "--trials", "7"
    )
    assert again.exit_code == 0
    assert "coalesced into pending request" in again.output and "priority 1" in again.output
    listed = _cli(clean_db, "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert len(rows) == 1
    assert rows[0]["reason"] == "new listing; analyst asked"
    assert rows[0]["priority"] == 1 and rows[0]["config"]["n_trials"] == 7
    table = _cli(clean_db, "list", "--status", "pending")
    assert "new listing; analyst asked" in table.output
    assert _cli(clean_db, "list", "--status", "failed").output.strip() == "no retrain requests"


def test_bad_input_is_one_clear_line(clean_db: str) -> None:
    out = _cli(clean_db, "enqueue", "--reason", "x", "--priority", "9")
    assert out.exit_code == 2 and "--priority" in out.output  # click: 9 not in 1<=x<=5
    out = _cli(clean_db, "enqueue", "--reason", " ")
    assert out.exit_code == 1 and "reason is empty" in out.output
    out = _cli(clean_db, "list", "--status", "sleeping")
    assert out.exit_code == 1 and "status 'sleeping'" in out.output
