"""Domain packages are Dagster-free: each imports, every module of it, with Dagster unimportable.

Dagster glue has one home (``orchestration/``) and definitions another (``defs/``); everything
else must be usable where Dagster is not installed (the streaming service, analysts' notebooks)
and testable without it. The imports run in a fresh interpreter with a meta-path finder that
refuses ``dagster`` and its ``dagster_*`` plugins.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ats_pipelines

PACKAGE_DIR = Path(ats_pipelines.__file__).parent
# What may use Dagster: the glue, the definitions, the entry point, the demo that materialises
# them, and the CLI that starts Dagster's own processes.
DAGSTER_SIDE = {"orchestration", "defs", "definitions", "demo", "cli"}
DOMAINS = sorted(
    m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if m.name not in DAGSTER_SIDE
)

# One interpreter for all domains (each pays seconds of polars/pandas imports): Dagster is
# blocked for the whole process, so one domain's imports cannot make another's pass.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback

class NoDagster:
    def find_spec(self, name, path=None, target=None):
        if name == "dagster" or name.startswith(("dagster.", "dagster_")):
            raise ImportError(f"dagster is unimportable in this test: {name}")
        return None

sys.meta_path.insert(0, NoDagster())
results = {}
for name in sys.argv[1:]:
    try:
        root = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), name + "."):
            importlib.import_module(info.name)
        results[name] = "ok"
    except BaseException:
        results[name] = traceback.format_exc(limit=-4)
print(json.dumps(results))
"""


def test_the_domain_list_is_not_empty() -> None:
    assert {"lib", "warehouse", "reader", "streaming", "training", "quality"} <= set(DOMAINS)


@pytest.fixture(scope="module")
def imported() -> dict[str, str]:
    """``ats_pipelines.<domain>`` → "ok" or the import's traceback, Dagster unimportable."""
    names = [f"ats_pipelines.{d}" for d in DOMAINS]
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, *names], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_imports_without_dagster(imported: dict[str, str], domain: str) -> None:
    assert imported[f"ats_pipelines.{domain}"] == "ok", imported[f"ats_pipelines.{domain}"]


def _dagster_imports(path: Path) -> list[int]:
    """Lines importing Dagster anywhere in the module, function bodies included (an import
    the subprocess test cannot reach because no one calls the function at import)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        top = {n.split(".")[0] for n in names}
        if any(t == "dagster" or t.startswith("dagster_") for t in top) or any(
            n.startswith(("ats_pipelines.orchestration", "ats_pipelines.defs")) for n in names
        ):
            lines.append(node.lineno)
    return lines


def test_no_domain_module_imports_dagster_lazily() -> None:
    found = {
        f"{path.relative_to(PACKAGE_DIR)}:{line}"
        for domain in DOMAINS
        for path in (PACKAGE_DIR / domain).rglob("*.py")
        if (PACKAGE_DIR / domain).is_dir()
        for line in _dagster_imports(path)
    }
    assert not found, f"Dagster (or its glue) imported in domain modules: {sorted(found)}"
