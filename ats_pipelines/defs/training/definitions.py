"""The training job, built when the code location loads: its executor comes from the settings
(``ATS_TRAINING_EXECUTOR``: in_process, multiprocess, or a cluster executor by import path).
Assets, checks, sensors, the other jobs and the schedules are module-level definitions."""

import dagster as dg

from ats_pipelines.defs.training.jobs import build_training_job
from ats_pipelines.training.config import load_training_settings


@dg.definitions
def training() -> dg.Definitions:
    return dg.Definitions(jobs=[build_training_job(load_training_settings().executor)])
