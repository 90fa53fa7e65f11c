"""`ats features env|sql` as a person runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features
from ats_pipelines.features.lake import Lake
from tests.features.conftest import START, all_timeframes, synthetic_minutes, write_lake


def ats(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ats_pipelines.cli.main", "features", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_env_prints_what_feature_store_yaml_reads(tmp_path: Path) -> None:
    proc = ats("env", env={"ATS_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
    assert lines["ATS_FEAST_REGISTRY"] == str(tmp_path / "state" / "feast" / "registry.db")
    assert lines["ATS_LAKE_DIR"] == str(tmp_path / "state" / "lake")
    yaml = Path(__file__).resolve().parents[2] / "feature_repo" / "feature_store.yaml"
    for name in ("ATS_FEAST_REGISTRY", "ATS_FEAST_ONLINE_STORE"):
        assert "${" + name + "}" in yaml.read_text() and name in lines


def test_sql_over_the_lake_views(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    write_lake(lake, all_timeframes(synthetic_minutes("binance", "BTC/USDT", days=1)))
    build_features(lake, cat.family_of("1h"), "binance", "BTC/USDT", [START.date()])
    env = {"ATS_LAKE_DIR": str(lake.root)}
    proc = ats("sql", "SELECT count(*) AS n, max(symbol) AS s FROM features_1h", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "24" in proc.stdout and "BTC/USDT" in proc.stdout
    views = ats("sql", "--print-views", env=env).stdout
    assert "CREATE OR REPLACE VIEW candles_1m" in views and "features_1m" not in views
    bad = ats("sql", "SELECT nope FROM features_1h", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: BinderException")
    empty = ats("sql", "SELECT 1", env={"ATS_LAKE_DIR": str(tmp_path / "none")})
    assert empty.returncode == 1 and "has no files yet" in empty.stderr


def test_sql_prints_wide_results_readably(tmp_path: Path) -> None:
    """A wide result (every feature column) is not squeezed into wrapped 3-character cells:
    too wide for the terminal, it prints one record per block, every name and value whole."""
    import json

    lake = Lake(tmp_path / "lake")
    write_lake(lake, all_timeframes(synthetic_minutes("binance", "BTC/USDT", days=1)))
    build_features(lake, cat.family_of("1h"), "binance", "BTC/USDT", [START.date()])
    env = {"ATS_LAKE_DIR": str(lake.root), "COLUMNS": "100"}
    query = "SELECT * FROM features_1h ORDER BY event_timestamp LIMIT 3"
    proc = ats("sql", query, env=env)
    assert proc.returncode == 0, proc.stderr
    columns = list(json.loads(ats("sql", query, "--format", "json", env=env).stdout)[0])
    assert len(columns) > 20
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, "wider than the terminal"
    names = [line.split("|")[0].strip() for line in lines if "|" in line]
    assert names == columns * 3  # every column whole, once per record
    assert "BTC/USDT" in proc.stdout and "2024-" in proc.stdout  # values whole too
    narrow = ats("sql", "SELECT symbol, count(*) AS n FROM features_1h GROUP BY 1", env=env)
    assert "BTC/USDT" in narrow.stdout and "24" in narrow.stdout  # a table when it fits
    assert "-[ record" not in narrow.stdout
    csv = ats(
        "sql",
        "SELECT symbol, count(*) AS n FROM features_1h GROUP BY 1",
        "--format",
        "csv",
        env=env,
    )
    assert csv.stdout.splitlines() == ["symbol,n", "BTC/USDT,24"]
