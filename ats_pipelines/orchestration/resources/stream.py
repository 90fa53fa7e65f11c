"""The ``stream`` Dagster resource: where a streaming run keeps its cache, spill files and
metrics endpoint (the exchange and the database come from the ``exchange`` and ``timescale``
resources)."""

from __future__ import annotations

import dagster as dg


class StreamResource(dg.ConfigurableResource):
    """Hot cache (Redis), spill directory and Prometheus port of streaming runs."""

    redis_url: str | None = None  # None: no hot cache
    state_dir: str = ".ats"  # spill files under <state_dir>/stream/spill/<shard>/
    metrics_port: int | None = None  # Prometheus /metrics on 127.0.0.1; None: off
