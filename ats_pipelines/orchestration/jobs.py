"""Types shared by the job modules of every ``defs/`` domain."""

from typing import Any

# define_asset_job returns a job resolved later; its class is not part of Dagster's public API
JobLike = Any
