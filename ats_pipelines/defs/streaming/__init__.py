"""Streaming: the long-running service as a Dagster job, and its freshness in the UI."""
