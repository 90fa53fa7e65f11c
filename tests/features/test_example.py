"""The analyst example runs end to end on its throwaway lake and prints all three parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "feature_retrieval.py"


def test_example_runs_on_a_synthetic_lake() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--synthetic"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEAST_USAGE": "False"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "feature services: signals_v1, context_v1" in out
    assert "training set: 720 rows x 67 columns" in out  # 6 hours x 2 symbols, labels + 57
    online = out.split("online:\n")[1].splitlines()
    assert online[1].startswith("BTC/USDT") and "None" not in online[1]
    assert "│ ETH/USDT ┆ 2880" in out
