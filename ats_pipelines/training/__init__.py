"""Training: the retrain queue, purged walk-forward validation, Optuna-tuned LightGBM, the model
registry with its promotion gates, predictions into signals and their outcomes, feature drift.

Dagster-free: the ``models`` and ``training_data`` resources are in
:mod:`ats_pipelines.orchestration.resources`; the assets, checks, sensors and schedules in
``ats_pipelines.defs.training`` drive these modules. See README.md in this folder.
"""
