"""The demo's training step: a request through the queue sensor, promotion, predictions and the
report's summary, on the training database with Definitions of the training domain."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ats_pipelines.config import Settings
from ats_pipelines.defs.training import assets, checks
from ats_pipelines.demo import DemoContext, _training
from ats_pipelines.orchestration.resources.features import FeastResource
from ats_pipelines.orchestration.resources.models import ModelsResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import FeastTrainingData
from ats_pipelines.training import queue


def test_the_demo_step_trains_promotes_and_predicts(
    clean_db: str, settings: Settings, tmp_path: Path
) -> None:
    db = TimescaleResource(database_url=clean_db)
    older = db.run(lambda c: queue.enqueue(c, scope="other", reason="waiting", priority=3))
    feast = FeastResource(
        repo_path=str(tmp_path / "repo"),
        registry=str(tmp_path / "r.db"),
        online_store=str(tmp_path / "o.db"),
        lake_root=str(tmp_path / "lake"),
    )
    defs = dg.Definitions(
        assets=[assets.lgbm_model, assets.champion_model, assets.predictions],
        asset_checks=[
            checks.beats_baselines_check,
            checks.beats_champion_check,
            checks.no_feature_missing_check,
        ],
        resources={
            "timescale": db,
            "training_data": FeastTrainingData(feast=feast),
            "models": ModelsResource(
                models_dir=str(tmp_path / "models"),
                reports_dir=str(tmp_path / "reports"),
                num_threads=1,
                tune_max_rows=None,
            ),
        },
    )
    with dg.DagsterInstance.ephemeral() as instance:
        lines = _training(DemoContext(settings=settings, defs=defs, instance=instance))
        again = _training(DemoContext(settings=settings, defs=defs, instance=instance))
    text = "\n".join(lines)
    assert lines[0].startswith("enqueued retrain request ") and "scope demo" in lines[0]
    assert "checks: beats_baselines_check passed" in text
    assert "promoted default-q" not in text and "promoted demo-q" in text
    assert "report: " + str(tmp_path / "reports" / "models" / "demo-q") in text
    assert any(line.startswith("predictions: 3 rows, 3 new") for line in lines)
    assert "promoted demo-q" in "\n".join(again)  # the demo resets its own scope each time
    # another scope's request was left alone (the demo's request is the most urgent)
    assert db.run(lambda c: queue.get(c, older.id)).status == "pending"  # type: ignore
