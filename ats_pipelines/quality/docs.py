"""Great Expectations Data Docs (static HTML) of a check-set run.

The validation results of the run are put into an ephemeral context's results store under one
run id and GX renders its site into a fresh directory, which then replaces the previous site
(pages of an older run never linger next to the new index). GX's pages load Bootstrap and
jQuery from public CDNs when a browser opens them; offline they render unstyled but complete.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ats_pipelines.quality.context import DOCS_SITE, quality_context
from ats_pipelines.quality.runner import SuiteOutcome


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "all"


def build_data_docs(
    outcomes: Sequence[tuple[str, SuiteOutcome]],
    docs_dir: Path,
    *,
    run_name: str,
    run_time: datetime,
) -> Path:
    """Render the outcomes' validation results (labelled, e.g. by exchange) into ``docs_dir``;
    returns the site's ``index.html``."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    docs_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data_docs.", dir=docs_dir.parent))
    context = quality_context(staging)
    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    for label, outcome in outcomes:
        for suite in outcome.suites.values():
            context.suites.add_or_update(suite)
        for batch, result in outcome.results.items():
            result.meta["run_id"] = run_id
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=run_id,
                batch_identifier=slug(f"{label}-{batch}"),
            )
            context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[DOCS_SITE])
    old = docs_dir.with_name(docs_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if docs_dir.exists():
        docs_dir.rename(old)
    staging.rename(docs_dir)
    shutil.rmtree(old, ignore_errors=True)
    return docs_dir / "index.html"
