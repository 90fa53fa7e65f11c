"""Registry (artifacts + ml.models + promotion), drift (PSI) and the model report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.training import drift, registry
from ats_pipelines.training.promotion import Gate
from ats_pipelines.training.report import report_data, summary_lines, write_report
from ats_pipelines.training.synthetic import make_training_set
from ats_pipelines.training.trainer import TrainerConfig, open_study, train_model

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _booster() -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((300, 3)), columns=pd.Index(["a", "b", "c"]))
    y = (X["a"] > 0).astype(int) + (X["b"] > 1).astype(int)
    params = {"objective": "multiclass", "num_class": 3, "verbosity": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=5), X


def _register(db: TimescaleResource, tmp: Path, model_id: str) -> registry.ModelRecord:
    booster, X = _booster()
    path = registry.save_artifact(
        tmp,
        model_id,
        booster,
        ["a", "b", "c"],
        {"p": 1},
        {"model": {"log_loss": float("nan")}},
        drift.reference(X),
    )
    return db.run(
        lambda c: registry.register(
            c,
            model_id=model_id,
            scope="s",
            feature_service="svc",
            features=["a", "b", "c"],
            artifact_path=path,
            params={"p": 1},
            metrics={"x": float("nan")},
            train_window=(T0, T0 + timedelta(days=1)),
            holdout_window=(T0 + timedelta(days=2), T0 + timedelta(days=3)),
            queue_id=None,
        )
    )


def test_artifacts_round_trip_and_broken_ones_are_named(clean_db: str, tmp_path: Path) -> None:
    db = TimescaleResource(database_url=clean_db)
    record = _register(db, tmp_path, "s-q1")
    assert record.status == "challenger" and record.metrics == {"x": None}  # NaN -> null
    loaded = registry.load_model(record)
    booster, X = _booster()
    expected = np.asarray(booster.predict(X.to_numpy()))
    assert np.allclose(loaded.predict_proba(X), expected)
    assert np.allclose(loaded.predict_proba(X.loc[:, ["c", "b", "a"]]), expected)
    with pytest.raises(registry.RegistryError, match=r"features missing: \['c'\]"):
        loaded.predict_proba(X.loc[:, ["a", "b"]])
    (Path(record.artifact_path) / "features.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(registry.RegistryError, match="differs from the registry row"):
        registry.load_model(record)
    (Path(record.artifact_path) / "model.txt").unlink()
    with pytest.raises(registry.RegistryError, match=r"lacks \['model.txt'\]"):
        registry.load_model(record)


def test_promotion_retires_the_old_champion_and_refuses_stale_comparisons(
    clean_db: str, tmp_path: Path
) -> None:
    db = TimescaleResource(database_url=clean_db)
    for model_id in ("s-q1", "s-q2", "s-q3"):
        _register(db, tmp_path, model_id)
    first = db.run(lambda c: registry.promote(c, "s-q1", expected_champion=None))
    assert first.status == "champion" and first.promoted_at is not None
    with pytest.raises(
        registry.RegistryError, match="champion is s-q1, the checks compared with None"
    ):
        db.run(lambda c: registry.promote(c, "s-q2", expected_champion=None))
    db.run(lambda c: registry.promote(c, "s-q2", expected_champion="s-q1"))
    again = db.run(lambda c: registry.promote(c, "s-q2", expected_champion="s-q1"))
    assert again.status == "champion"  # idempotent
    old = db.run(lambda c: registry.get_model(c, "s-q1"))
    assert old is not None and old.status == "retired" and old.retired_at is not None
    db.run(lambda c: registry.reject(c, "s-q3", ["beats_baselines: worse"]))
    rejected = db.run(lambda c: registry.get_model(c, "s-q3"))
    assert rejected is not None and rejected.status == "rejected"
    assert rejected.metrics["rejected_because"] == ["beats_baselines: worse"]
    with pytest.raises(registry.RegistryError, match="only a challenger can be promoted"):
        db.run(lambda c: registry.promote(c, "s-q3", expected_champion="s-q2"))
    with pytest.raises(registry.RegistryError, match="never overwritten"):
        _register(db, tmp_path, "s-q2")  # re-registering a champion
    assert _register(db, tmp_path, "s-q3").status == "challenger"  # a rejected one: retrain


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.standard_normal(20_000), "y": rng.uniform(0, 1, 20_000)})
    ref = drift.reference(train)
    same = drift.psi(
        ref, pd.DataFrame({"x": rng.standard_normal(5000), "y": rng.uniform(0, 1, 5000)})
    )
    assert same.max_psi < 0.02 and not same.alarm
    shifted = drift.psi(ref, pd.DataFrame({"x": rng.standard_normal(5000) + 1.0}))
    assert shifted.drifted == ["x"] and shifted.psi["x"] > 0.25 and shifted.missing == ["y"]
    with_nans = drift.psi(
        ref, pd.DataFrame({"x": np.where(rng.uniform(size=5000) < 0.5, np.nan, 0.0), "y": 0.5})
    )
    assert with_nans.psi["x"] > 1.0  # half missing and a spike: a major shift


def test_the_report_has_tables_and_four_inline_svg_plots(tmp_path: Path) -> None:
    data = make_training_set(3000, 6, kind="planted", seed=5, symbols=2)
    cfg = TrainerConfig(n_trials=2, max_rounds=40, num_threads=1, tune_max_rows=None)
    result = train_model(data, cfg, open_study("r", None, request="q9", cfg=cfg), request="q9")
    report = report_data(result, "r<&>-q9", "r", "synthetic", "momentum")
    report.gates = [Gate("beats_baselines", True), Gate("beats_champion", False, ["worse"])]
    md_path, html_path = write_report(report, tmp_path)
    md, html = md_path.read_text(), html_path.read_text()
    assert md.startswith("# Model r<&>-q9") and "## Holdout comparison" in md
    assert "| log-loss |" in md and "## Promotion gates" in md and "| beats_champion | FAIL" in md
    assert html.count("<svg") == 4 and "r&lt;&amp;&gt;-q9" in html and "<title>Feature" in html
    lines = summary_lines(report)
    assert lines[0].startswith("model r<&>-q9 (scope r, synthetic): 2 trials")
    assert lines[-1] == "gate beats_champion: FAIL (worse)"
