"""The Great Expectations context: ephemeral (in memory), no GX Cloud, analytics off.

Suites live in code (``suites.py``), not in a context's store, so an ephemeral context is all
a validation needs; it costs milliseconds to make, keeps no state between runs and lets checks
run in parallel processes without sharing files. Data Docs, when asked for, are written to a
plain filesystem site (``docs_dir``), which is all GX needs to build the static HTML.

GX 1.x no longer sends usage statistics and never calls its PyPI version check, but the
environment switch is still set here (and ``analytics_enabled=False`` in the project config),
so a future GX that reads it again stays silent: nothing of this leaves loopback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )

DOCS_SITE = "quality"
_NOISY_LOGGERS = ("great_expectations",)


def quality_context(docs_dir: Path | None = None) -> AbstractDataContext:
    """A fresh ephemeral GX context; with ``docs_dir``, a Data Docs site writing there."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    for name in _NOISY_LOGGERS:  # GX logs every metric at INFO; our logs name what matters
        logging.getLogger(name).setLevel(logging.WARNING)
    sites = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=sites,
    )
    return gx.get_context(mode="ephemeral", project_config=config)
