"""Signals: the trend analyzer's rule, analyzer runs with watermarks, the coordinator, replay.

Dagster-free; the Dagster definitions are in ``ats_pipelines/defs/signals``.
"""
