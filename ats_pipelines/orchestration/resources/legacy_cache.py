"""The Dagster resource naming the legacy cache: its root, settings file and archive."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ats_pipelines.config import load_settings
from ats_pipelines.migration.config import MigrationConfig, load_config
from ats_pipelines.migration.discovery import Discovery, Identifier, discover
from ats_pipelines.migration.markets import MarketCatalog, load_catalog


class LegacyCacheResource(dg.ConfigurableResource):
    """The legacy Parquet cache to migrate (root, settings file, optional archive folder)."""

    root: str | None = None
    config_file: str | None = None
    archive_dir: str | None = None
    markets_file: str | None = None
    reports_dir: str | None = None

    def report_folder(self) -> Path:
        """Where reports go: this resource's folder, else the state folder's reports/."""
        return Path(self.reports_dir) if self.reports_dir else load_settings().reports_dir

    def migration_config(self) -> MigrationConfig:
        """The settings file, with this resource's non-empty fields taking precedence."""
        config = load_config(Path(self.config_file) if self.config_file else None)
        return config.with_overrides(
            root=Path(self.root) if self.root else None,
            archive_dir=Path(self.archive_dir) if self.archive_dir else None,
            markets_file=Path(self.markets_file) if self.markets_file else None,
        ).check()

    def root_path(self) -> Path:
        root = self.migration_config().root
        if root is None:
            raise dg.Failure(
                "legacy cache root is not configured (resource `legacy_cache` "
                "root, or `root` in the migration settings file)"
            )
        return root.resolve()

    def catalog(self) -> MarketCatalog:
        return load_catalog(self.migration_config().markets_file)

    def identifier(self) -> Identifier:
        return Identifier.build(self.migration_config(), self.catalog())

    def discover(self) -> Discovery:
        return discover(self.root_path(), self.migration_config(), self.catalog())
