"""Dagster resources of the features domain: the Parquet lake and the Feast store.

Thin adapters (the logic is in the Dagster-free modules next to this one); chosen per
environment in ``ats_pipelines/defs/resources.py``. Feast is imported only when a store is
opened: importing it costs seconds, and most runs never need it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ats_pipelines.features.lake import Lake

LOCAL_YAML = "feature_store.yaml"
PROD_YAML = "feature_store.prod.yaml"

if TYPE_CHECKING:
    from feast import FeatureStore

    from ats_pipelines.features.repo import FeastRepo


class LakeResource(dg.ConfigurableResource):
    """Parquet lake of exported market data, features and labels (one file per symbol-day)."""

    root: str

    def lake(self) -> Lake:
        return Lake(Path(self.root))


class FeastResource(dg.ConfigurableResource):
    """Feast store of feature_repo/: registry, online store, DuckDB offline store on the lake."""

    repo_path: str
    registry: str  # a file locally; a SQL URL in prod (secret: through EnvVar)
    online_store: str  # a SQLite file locally; a Redis connection string in prod
    lake_root: str
    yaml_file: str = LOCAL_YAML

    def store(self) -> FeatureStore:
        from ats_pipelines.features.store import open_store

        # Feast before 0.40 sent usage telemetry unless this is set; 0.67 sends none.
        os.environ.setdefault("FEAST_USAGE", "False")
        if self.yaml_file == LOCAL_YAML:  # registry and online store are files under .ats/
            for path in (self.registry, self.online_store):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open_store(
            Path(self.repo_path),
            {
                "ATS_FEAST_REGISTRY": self.registry,
                "ATS_FEAST_ONLINE_STORE": self.online_store,
            },
            self.yaml_file,
        )

    def repo(self) -> FeastRepo:
        from ats_pipelines.features.repo import build_repo

        return build_repo(Path(self.lake_root))
