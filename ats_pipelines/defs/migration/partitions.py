"""One dynamic partition per legacy cache file (key: its path relative to the cache root)."""

import dagster as dg

from ats_pipelines.orchestration.migration import PARTITIONS

legacy_cache_files = dg.DynamicPartitionsDefinition(name=PARTITIONS)
