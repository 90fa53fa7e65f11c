"""The ``stream`` Dagster resource: where a streaming run keeps its cache, spill files and
metrics endpoint (the exchange and the database come from the ``exchange`` and ``timescale``
resources)."""

from __future__ import annotations

import dagster as dg

from ats_pipelines.local_secrets import with_password


class StreamResource(dg.ConfigurableResource):
    """Hot cache (Redis), spill directory and Prometheus port of streaming runs."""

    redis_url: str | None = None  # None: no hot cache; no password here (EnvVar or file)
    password_file: str | None = None  # the managed Redis's generated password, read per use
    state_dir: str = ".ats"  # spill files under <state_dir>/stream/spill/<shard>/
    metrics_port: int | None = None  # Prometheus /metrics on 127.0.0.1; None: off

    @property
    def url(self) -> str | None:
        """The hot cache's URL to connect with (the password added when it is used)."""
        return None if self.redis_url is None else with_password(self.redis_url, self.password_file)
