"""The training domain in the project's code location, and its executor / settings switches."""

from __future__ import annotations

import dagster as dg
import pytest

from ats_pipelines.config import ConfigError
from ats_pipelines.defs.training.jobs import build_training_job, executor_for
from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.orchestration.resources.training import FeastTrainingData
from ats_pipelines.training.config import load_training_settings


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    from ats_pipelines.definitions import defs

    return defs()


def test_the_code_location_has_the_training_domain(definitions: dg.Definitions) -> None:
    keys = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    assert {
        "lgbm_model",
        "champion_model",
        "predictions",
        "signal_outcomes",
        "live_model_performance",
        "feature_drift",
    } <= keys
    graph = definitions.resolve_asset_graph()
    checks = {
        k.name: graph.get_check_spec(k)
        for k in graph.asset_check_keys
        if k.asset_key == dg.AssetKey("lgbm_model")
    }
    assert set(checks) == {
        "beats_baselines_check",
        "beats_champion_check",
        "no_feature_missing_check",
    }
    assert all(spec.blocking for spec in checks.values())
    jobs = {j.name for j in definitions.resolve_all_job_defs()}
    assert {
        "training_job",
        "retrain_request_job",
        "predictions_job",
        "signal_outcomes_job",
        "feature_drift_job",
    } <= jobs
    sensors = {s.name for s in definitions.sensors or []}
    assert {
        "retrain_queue_sensor",
        "retrain_run_failure_sensor",
        "predictions_new_bars_sensor",
    } <= sensors
    schedules = {s.name for s in definitions.schedules or []}
    assert {
        "weekly_retrain_schedule",
        "feature_drift_schedule",
        "signal_outcomes_schedule",
    } <= schedules
    resources = definitions.resources or {}
    assert isinstance(resources["models"], ModelsResource)
    assert isinstance(resources["training_data"], FeastTrainingData)
    assert (resources["models"].optuna_url or "").startswith("postgresql+psycopg2://")


def test_executor_switch() -> None:
    assert executor_for("in_process") is dg.in_process_executor
    assert executor_for("multiprocess") is dg.multiprocess_executor
    assert build_training_job("multiprocess").executor_def is dg.multiprocess_executor
    with pytest.raises(ConfigError, match="use in_process, multiprocess or module:attribute"):
        executor_for("k8s")
    with pytest.raises(ConfigError, match="install the package providing it"):
        executor_for("dagster_k8s:k8s_job_executor")
    with pytest.raises(ConfigError, match="is not a Dagster executor"):
        executor_for("dagster:asset")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ATS_TRAINING_BACKEND": "spark"}, "ATS_TRAINING_BACKEND='spark'"),
        ({"ATS_TRAINING_BACKEND": "dask"}, "needs ATS_DASK_SCHEDULER"),
        ({"ATS_TRAINING_TRIALS": "0"}, "ATS_TRAINING_TRIALS=0 must be at least 1"),
        ({"ATS_LABEL_RISK": "x"}, "ATS_LABEL_RISK='x' is not a number"),
    ],
)
def test_bad_training_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_training_settings(env)


def test_training_settings_defaults_follow_the_feature_layer() -> None:
    settings = load_training_settings({"ATS_STATE_DIR": "/tmp/ats-x"})
    scope = settings.scope("default")
    assert (scope.feature_service, scope.timeframe, scope.label_set) == (
        "signals_v1",
        "1m",
        "labels_1m",
    )
    assert (scope.barriers.horizon, scope.barriers.risk, scope.barriers.reward) == (15, 0.002, 2.0)
    assert str(settings.models_dir) == "/tmp/ats-x/models"
    assert settings.optuna_url.startswith(
        "postgresql+psycopg2://"
    ) and settings.optuna_url.endswith("/ats_optuna")
    with pytest.raises(ConfigError, match="unknown model scope 'btc'"):
        settings.scope("btc")
