"""One dynamic partition per legacy cache file (key: its path relative to the cache root)."""

import dagster as dg

legacy_cache_files = dg.DynamicPartitionsDefinition(name="legacy_cache_files")
