"""Scale-out of training, run for real: the final fit on a Dask cluster of two worker processes
over TCP (LightGBM's Dask estimator) scores the holdout like the local fit, and Optuna workers in
separate processes share one PostgreSQL study without duplicate or lost trials."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from distributed import LocalCluster

from ats_pipelines.deploy.workers import dask_cluster
from ats_pipelines.training.backends import final_fit_for
from ats_pipelines.training.config import sqlalchemy_url
from ats_pipelines.training.synthetic import make_training_set
from ats_pipelines.training.trainer import open_study, train_model
from tests.training.test_trainer import CFG as TRAINER_TEST_CFG

pytestmark = pytest.mark.integration
# the trainer tests' small configuration, with fewer trials and rounds
CFG = dataclasses.replace(TRAINER_TEST_CFG, n_trials=3, max_rounds=80, n_startup_trials=2)
# Data-parallel LightGBM finds each split on histograms merged across workers, so its trees
# can differ from the local ones in near-ties; the holdout scores must agree this closely.
LOG_LOSS_TOLERANCE = 0.01
AUC_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, talking TCP on loopback."""
    with dask_cluster(2) as local_cluster:
        yield local_cluster


def test_dask_final_fit_scores_the_holdout_like_the_local_fit(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_training_set(6000, 8, kind="planted", seed=3, symbols=3)
    study = open_study("dask-parity", None, request="r1", cfg=CFG)
    local = train_model(data, CFG, study, request="r1")
    dask_fit = final_fit_for("dask", cluster.scheduler_address, CFG.max_bin)
    with caplog.at_level(logging.INFO, logger="ats_pipelines.training.backends"):
        # same study and request: no new trials, the same parameters and rounds
        distributed = train_model(data, CFG, study, request="r1", final_fit=dask_fit)
    assert distributed.params == local.params
    assert distributed.booster.current_iteration() == local.booster.current_iteration()
    assert "workers=2 workers_with_data=2" in caplog.text  # both processes trained on a share
    ours, theirs = distributed.metrics["model"], local.metrics["model"]
    print(
        f"holdout log_loss dask={ours['log_loss']:.5f} local={theirs['log_loss']:.5f} "
        f"auc dask={ours['auc']:.5f} local={theirs['auc']:.5f}"
    )
    assert abs(ours["log_loss"] - theirs["log_loss"]) <= LOG_LOSS_TOLERANCE
    assert abs(ours["auc"] - theirs["auc"]) <= AUC_TOLERANCE
    assert ours["log_loss"] < distributed.metrics["momentum"]["log_loss"]  # still learnt


def test_optuna_workers_in_two_processes_share_one_postgres_study(
    training_db: str, tmp_path: Path
) -> None:
    storage = sqlalchemy_url(training_db)
    scope, per_worker = f"shared-{uuid.uuid4().hex[:8]}", 6
    outs = [tmp_path / f"worker{i}.txt" for i in range(2)]
    worker = Path(__file__).with_name("optuna_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), storage, scope, str(per_worker), str(out)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    ran = [int(n) for out in outs for n in out.read_text().split()]
    study = optuna.load_study(study_name=f"ats:{scope}", storage=storage)
    numbers = [t.number for t in study.trials]
    assert len(ran) == len(set(ran)) == 2 * per_worker  # no trial run twice
    assert sorted(numbers) == sorted(ran) == list(range(2 * per_worker))  # none lost
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(out.read_text().strip() for out in outs)  # both processes ran trials
