"""ATS Pipelines: the data platform of an automated trading system, built on Dagster."""

__version__ = "0.1.0"
