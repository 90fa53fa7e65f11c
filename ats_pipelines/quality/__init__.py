"""Data quality without Dagster: Great Expectations suites defined in code, the frames they
validate, reconciliation between sources, freshness, quality scores, and the report.

``ats_pipelines.defs.quality`` turns these into asset checks and the ``quality_report`` asset.
Great Expectations is imported lazily (inside the functions that need it): it takes seconds to
import, and every Dagster process loads the definitions.
"""
