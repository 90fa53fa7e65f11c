"""Dagster resources (``ConfigurableResource``s); chosen per ATS_ENV in ``defs/resources.py``."""
