"""`ats db …` as a person runs it: clear one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def ats(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://ats@127.0.0.1:1/ats", "127.0.0.1:1/ats: connection refused"),
        ("postgresql://ats@127.0.0.2:1/ats", "127.0.0.2:1/ats: connection refused"),
    ],
)
def test_unreachable_server_is_one_clear_line(url: str, expected: str) -> None:
    proc = ats("db", "status", env={"ATS_DATABASE_URL": url})
    assert proc.returncode == 1
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_wrong_password_is_named_without_showing_it(admin_sql, settings) -> None:
    # only the cluster's administrator creates roles (the platform's role may not)
    admin_sql(
        "DROP ROLE IF EXISTS ats_pw_probe; CREATE ROLE ats_pw_probe LOGIN PASSWORD 'right-one';"
    )
    try:
        url = f"postgresql://ats_pw_probe:wrong-secret@127.0.0.1:{settings.db_port}/postgres"
        proc = ats("db", "status", env={"ATS_DATABASE_URL": url})
        assert proc.returncode == 1
        assert f"127.0.0.1:{settings.db_port}/postgres: password authentication failed" in (
            proc.stderr
        )
        assert "wrong-secret" not in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr
    finally:
        admin_sql("DROP ROLE IF EXISTS ats_pw_probe;")


def test_missing_database_is_named(settings) -> None:
    url = settings.database_url_for("no_such_db_here")  # the right role and password
    proc = ats("db", "status", env={"ATS_DATABASE_URL": url})
    assert proc.returncode == 1
    assert "no_such_db_here: database does not exist" in proc.stderr


def test_up_and_down_do_nothing_against_an_external_server() -> None:
    env = {"ATS_DATABASE_URL": "postgresql://someone:pw@db.example:5432/ats"}
    up = ats("db", "up", env=env)
    down = ats("db", "down", env=env)
    assert up.returncode == 0 and "nothing to start" in up.stdout
    assert down.returncode == 0 and "nothing to stop" in down.stdout
    assert "pw" not in up.stdout.replace("password", "")


def test_url_masks_the_password() -> None:
    proc = ats("db", "url", env={"ATS_DATABASE_URL": "postgresql://u:s3cret@h:5432/d"})
    assert proc.stdout.strip() == "postgresql://u:***@h:5432/d"


def test_malformed_settings_are_named() -> None:
    proc = ats("db", "status", env={"ATS_DB_PORT": "fifty"})
    assert proc.returncode == 1
    assert "ATS_DB_PORT='fifty' is not a port number" in proc.stderr


def test_status_reports_edition(server_license: str) -> None:
    proc = ats("db", "status")
    assert proc.returncode == 0, proc.stderr
    assert server_license in ("apache", "timescale")
    assert f"license={server_license}" in proc.stdout
