"""Features: the Parquet lake, multi-timeframe features, labels and the Feast offline store.

Dagster-free. The assets in ``ats_pipelines.defs.features`` drive these modules; the Feast
repository (``feature_repo/``) builds its objects with :mod:`ats_pipelines.features.repo`.
"""
