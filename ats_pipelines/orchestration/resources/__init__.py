"""Dagster resources (``ConfigurableResource``s) of every domain: configuration in, the domain's
plain objects out. Chosen per ATS_ENV in ``defs/resources.py``."""
