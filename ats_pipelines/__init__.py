"""ATS Pipelines: the data platform of an automated trading system, built on Dagster."""

import os as _os

# ``feast`` imports ``feast.metrics``, which points prometheus_client at a multiprocess
# directory for the whole process (PROMETHEUS_MULTIPROCESS_DIR, set in os.environ, so every
# child process inherits it too); prometheus_client picks its value store once, when first
# imported. The streaming service's metrics are in-process, one registry per service: in
# multiprocess mode every service in a process would share one set of values through mmap
# files (seen in the test suite). So an inherited Feast directory is dropped, and
# prometheus_client is imported here, before anything can import Feast.
for _name in ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
    if _os.path.basename(_os.environ.get(_name, "").rstrip("/")).startswith("feast_metrics_"):
        del _os.environ[_name]

import prometheus_client.values  # noqa: E402, F401

__version__ = "0.1.0"
