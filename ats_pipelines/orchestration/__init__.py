"""The one home of Dagster glue that is not itself a definition (``defs/`` is auto-loaded, so
only definitions live there): the domains' ``ConfigurableResource``s (``resources/``), the
partitions several domains share (``partitions.py``), asset-check helpers (``check_results.py``,
``checks.py``), the migration assets' plumbing (``migration.py``) and shared types (``jobs.py``).

Everything outside ``orchestration/``, ``defs/``, ``definitions.py``, ``demo.py`` and the CLI is
Dagster-free; ``tests/test_dagster_free.py`` imports each of those packages with Dagster made
unimportable.
"""
