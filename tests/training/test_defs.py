"""The training domain through Dagster on the real database: the queue sensor launches a run
per request, blocking checks gate promotion both ways, failures mark the request failed and the
queue moves on, triggers enqueue.

Training data here is ``SyntheticTrainingData`` (a named stand-in with a planted signal or pure
noise, so the outcome of the gates is known); the Feast path is tested in test_feast_source.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dagster as dg
import optuna
import pytest

from ats_pipelines.db.connect import replace_database
from ats_pipelines.db.sqlid import quote_ident
from ats_pipelines.defs.training import assets, checks, jobs, schedules, sensors
from ats_pipelines.orchestration.resources.models import ModelsResource, ScopeConfig
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.orchestration.resources.training import SyntheticTrainingData
from ats_pipelines.training import queue, registry
from ats_pipelines.training.config import sqlalchemy_url

SCOPE = ScopeConfig(
    exchange="synthetic",
    symbols=["SYN0/USDT", "SYN1/USDT", "SYN2/USDT"],
    timeframe="1h",
    horizon=6,
    risk=0.01,
    reward=1.0,
    momentum_feature="momentum",
    volatility_feature="f05",
)


def _defs(db: str, tmp: Path, data: SyntheticTrainingData, **models: Any) -> dg.Definitions:
    resources = {
        "timescale": TimescaleResource(database_url=db),
        "models": ModelsResource(
            **{
                "models_dir": str(tmp / "models"),
                "reports_dir": str(tmp / "reports"),
                "optuna_url": None,
                "n_trials": 4,
                "max_rounds": 100,
                "early_stopping_rounds": 15,
                "num_threads": 1,
                "tune_max_rows": None,
                "scopes": {"default": SCOPE},
                **models,
            }
        ),
        "training_data": data,
    }
    return dg.Definitions(
        assets=[
            assets.lgbm_model,
            assets.champion_model,
            assets.predictions,
            assets.signal_outcomes,
            assets.live_model_performance,
            assets.feature_drift,
        ],
        asset_checks=[
            checks.beats_baselines_check,
            checks.beats_champion_check,
            checks.no_feature_missing_check,
        ],
        jobs=[jobs.build_training_job("in_process"), jobs.retrain_request_job],
        sensors=[sensors.retrain_queue_sensor, sensors.retrain_run_failure_sensor],
        schedules=[schedules.weekly_retrain_schedule],
        resources=resources,
    )


def _planted() -> SyntheticTrainingData:
    return SyntheticTrainingData(kind="planted", rows=6000, features=8, symbols=3, seed=3)


def _noise() -> SyntheticTrainingData:
    return SyntheticTrainingData(kind="noise", rows=6000, features=8, symbols=3, seed=4)


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(
        instance=instance, resources=defs.resources, sensor_name="retrain_queue_sensor"
    )
    result = sensors.retrain_queue_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or [])


def _run(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(jobs.TRAINING_JOB)
    return job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False
    )


def _fetch(db: str, query: str, *args: Any) -> list[dict[str, Any]]:
    return _db(db, lambda c: c.fetch(query, *args))


def _db(db: str, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Run ``fn(conn)`` on the test database (these tests are synchronous like Dagster)."""
    value = TimescaleResource(database_url=db).run(fn)
    return (
        [dict(r) for r in value]
        if isinstance(value, list) and value and isinstance(value[0], asyncpg.Record)
        else value
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def optuna_url(training_db: str) -> Iterator[str]:
    """A database for Optuna that does not exist yet (the models resource creates it)."""
    name = f"ats_optuna_{uuid.uuid4().hex[:10]}"
    yield sqlalchemy_url(replace_database(training_db, name))
    _db(
        replace_database(training_db, "postgres"),
        lambda c: c.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"),
    )


def test_planted_signal_is_promoted_and_noise_is_not(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance, optuna_url: str
) -> None:
    planted = _defs(clean_db, tmp_path, _planted(), optuna_url=optuna_url)
    request = _db(clean_db, lambda c: queue.enqueue(c, reason="first model", priority=2))
    [run_request] = _tick(planted, instance)
    assert run_request.run_key == str(request.id)
    assert run_request.run_config["ops"]["lgbm_model"]["config"]["queue_id"] == request.id
    assert _tick(planted, instance) == []  # one run at a time: nothing more to claim
    result = _run(planted, instance, run_request)
    assert result.success
    assert _checks(result) == {
        "beats_baselines_check": True,
        "beats_champion_check": True,
        "no_feature_missing_check": True,
    }
    model_id = registry.model_id_for("default", request.id)
    meta = result.asset_materializations_for_node("lgbm_model")[0].metadata
    assert meta["model_id"].value == model_id
    assert meta["holdout_log_loss"].value < meta["momentum_log_loss"].value  # type: ignore[operator]
    assert meta["holdout_log_loss"].value < meta["prior_log_loss"].value  # type: ignore[operator]
    assert "## Holdout comparison" in meta["report"].value  # type: ignore[operator]
    html = (tmp_path / "reports" / "models" / f"{model_id}.html").read_text()
    assert html.count("<svg") == 4
    champion = _db(clean_db, lambda c: registry.champion(c, "default"))
    done = _db(clean_db, lambda c: queue.get(c, request.id))
    assert champion is not None and champion.model_id == model_id
    assert champion.queue_id == request.id and champion.feature_service == "synthetic"
    assert Path(champion.artifact_path, "model.txt").is_file()
    assert done is not None and done.status == "completed" and done.run_id == result.run_id
    study = optuna.load_study(study_name="ats:default", storage=optuna_url)  # in PostgreSQL
    assert {t.user_attrs["request"] for t in study.trials} == {f"q{request.id}"}
    assert len(study.trials) == 4

    # pure noise: trained and registered, but the gates hold and the champion stays
    noise = _defs(clean_db, tmp_path, _noise())
    second = _db(clean_db, lambda c: queue.enqueue(c, reason="noise", priority=3))
    [run_request] = _tick(noise, instance)
    result = _run(noise, instance, run_request)
    assert _checks(result)["beats_baselines_check"] is False
    assert not result.asset_materializations_for_node("champion_model")
    still = _db(clean_db, lambda c: registry.champion(c, "default"))
    rejected = _db(
        clean_db, lambda c: registry.get_model(c, registry.model_id_for("default", second.id))
    )
    done = _db(clean_db, lambda c: queue.get(c, second.id))
    assert still is not None and still.model_id == model_id
    assert rejected is not None and rejected.status == "rejected"
    assert any("log-loss" in r for r in rejected.metrics["rejected_because"])
    assert done is not None and done.status == "completed"  # the training itself succeeded


def test_a_failing_training_marks_its_request_failed_and_the_queue_moves_on(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    tiny = _defs(clean_db, tmp_path, SyntheticTrainingData(rows=60, features=6, symbols=2))
    bad = _db(clean_db, lambda c: queue.enqueue(c, reason="too little data", priority=1))
    unknown = _db(
        clean_db, lambda c: queue.enqueue(c, scope="ghost", reason="no such scope", priority=2)
    )
    [run_request] = _tick(tiny, instance)
    assert run_request.run_key == str(bad.id)
    result = _run(tiny, instance, run_request)
    assert not result.success
    failed = _db(clean_db, lambda c: queue.get(c, bad.id))
    assert failed is not None and failed.status == "failed" and failed.completed_at
    assert failed.error_message == "TrainingDataError: training set has 60 rows; need at least 200"
    # the queue moves on: a request for an unknown scope fails when claimed, without a run
    later = _db(clean_db, lambda c: queue.enqueue(c, reason="next", priority=5))
    assert _tick(tiny, instance) == []
    ghost = _db(clean_db, lambda c: queue.get(c, unknown.id))
    assert ghost is not None and ghost.status == "failed"
    assert "unknown model scope 'ghost'" in (ghost.error_message or "")
    [run_request] = _tick(tiny, instance)
    assert run_request.run_key == str(later.id)


def test_a_run_that_dies_before_training_is_failed_by_the_run_failure_sensor(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = _defs(clean_db, tmp_path, _planted())
    request = _db(clean_db, lambda c: queue.enqueue(c, reason="x"))
    [item] = _db(clean_db, lambda c: queue.claim(c))
    broken = dg.RunRequest(
        run_key=item.run_key,
        tags={sensors.QUEUE_TAG: str(item.id), sensors.ATTEMPT_TAG: "1"},
        run_config={
            "ops": {
                "lgbm_model": {"config": {"queue_id": item.id, "attempt": 1, "scope": "missing"}}
            }
        },
    )
    result = _run(defs, instance, broken)
    assert not result.success
    assert _db(clean_db, lambda c: queue.get(c, request.id)).status == "processing"
    context = dg.build_run_status_sensor_context(
        sensor_name="retrain_run_failure_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"timescale": TimescaleResource(database_url=clean_db)},
    ).for_run_failure()
    sensors.retrain_run_failure_sensor(context)
    failed = _db(clean_db, lambda c: queue.get(c, request.id))
    assert failed is not None and failed.status == "failed"
    assert "unknown model scope 'missing'" in (failed.error_message or "")
    assert failed.run_id == result.run_id


def test_the_sensor_reclaims_a_crashed_claim_with_a_new_run_key(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = _defs(clean_db, tmp_path, _planted(), stale_after_s=0)
    request = _db(clean_db, lambda c: queue.enqueue(c, reason="x"))
    _db(clean_db, lambda c: queue.claim(c))  # a run that will never report back
    [run_request] = _tick(defs, instance)
    assert run_request.run_key == f"{request.id}.2"
    assert run_request.run_config["ops"]["lgbm_model"]["config"]["attempt"] == 2


def test_triggers_enqueue_weekly_manual_degradation_and_drift(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = _defs(clean_db, tmp_path, _planted())
    when = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"models": (defs.resources or {})["models"]},
    )
    [weekly] = list(schedules.weekly_retrain_schedule(context))  # type: ignore[arg-type]
    assert weekly.run_key == "weekly:default:2026-W10"
    job = defs.resolve_job_def("retrain_request_job")
    assert job.execute_in_process(run_config=weekly.run_config, instance=instance).success
    manual = {
        "ops": {
            "enqueue_retrain": {"config": {"reason": "analyst asked", "priority": 1, "n_trials": 3}}
        }
    }
    queue_id = job.execute_in_process(run_config=manual, instance=instance).output_for_node(
        "enqueue_retrain"
    )
    rows = _fetch(
        clean_db, "SELECT id, reason, priority, config, requested_by FROM ml.retrain_queue"
    )
    assert len(rows) == 1 and rows[0]["id"] == queue_id  # coalesced into the weekly request
    assert rows[0]["priority"] == 1
    assert rows[0]["reason"] == "weekly schedule 2026-W10; analyst asked"
    assert json.loads(rows[0]["config"])["n_trials"] == 3

    # a champion, then drift on shifted features and degraded outcomes both enqueue
    [run_request] = _tick(defs, instance)
    assert _run(defs, instance, run_request).success
    drifted = _defs(
        clean_db,
        tmp_path,
        SyntheticTrainingData(
            kind="planted", rows=6000, features=8, symbols=3, seed=3, drift_shift=2.0
        ),
    )
    steady = dg.materialize([assets.feature_drift], resources=defs.resources, instance=instance)
    assert steady.asset_materializations_for_node("feature_drift")[0].metadata["alarms"].value == 0
    shifted = dg.materialize([assets.feature_drift], resources=drifted.resources, instance=instance)
    assert shifted.asset_materializations_for_node("feature_drift")[0].metadata["alarms"].value == 1
    rows = _fetch(
        clean_db,
        "SELECT reason, priority, requested_by FROM ml.retrain_queue WHERE status = 'pending'",
    )
    assert [(r["priority"], r["requested_by"]) for r in rows] == [(2, "drift")]
    assert rows[0]["reason"].startswith("feature drift vs default-q")


def test_predictions_outcomes_and_the_degradation_trigger(
    clean_db: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = _defs(
        clean_db, tmp_path, _planted(), degradation_min_signals=1, degradation_min_win_rate=0.5
    )
    _db(clean_db, lambda c: queue.enqueue(c, reason="first"))
    [run_request] = _tick(defs, instance)
    assert _run(defs, instance, run_request).success
    predicted = dg.materialize([assets.predictions], resources=defs.resources, instance=instance)
    assert predicted.success
    signals = _fetch(clean_db, "SELECT * FROM signals.signals ORDER BY symbol")
    assert [s["symbol"] for s in signals] == ["SYN0/USDT", "SYN1/USDT", "SYN2/USDT"]
    for s in signals:
        assert s["pred"] in ("BUY", "SELL", "HOLD") and 0 < s["proba"] <= 1
        assert s["latency_ms"] > 0 and s["market_regime"] in (
            "trend_up",
            "trend_down",
            "range",
            "volatile",
        )
        assert set(json.loads(s["features"])) == {f"f{i:02d}" for i in range(7)} | {"momentum"}
        assert s["outcome"] is None
    # re-scoring the same bars writes nothing new
    again = dg.materialize([assets.predictions], resources=defs.resources, instance=instance)
    assert again.asset_materializations_for_node("predictions")[0].metadata["inserted"].value == 0

    # two earlier signals that surely took a position, then the market moves against every
    # BUY/SELL (and sideways for HOLD): losses
    _db(
        clean_db,
        lambda c: c.execute(
            "INSERT INTO signals.signals (ts, exchange, symbol, tf, model_id, pred, proba) "
            "SELECT ts - interval '1 day', exchange, symbol, tf, model_id, "
            "CASE WHEN symbol = 'SYN0/USDT' THEN 'BUY' ELSE 'SELL' END, 0.6 "
            "FROM signals.signals WHERE symbol IN ('SYN0/USDT', 'SYN1/USDT')"
        ),
    )
    signals = _fetch(clean_db, "SELECT * FROM signals.signals ORDER BY symbol, ts")
    _write_adverse_candles(clean_db, signals)
    filled = dg.materialize(
        [assets.signal_outcomes, assets.live_model_performance],
        resources=defs.resources,
        instance=instance,
        selection=["signal_outcomes", "live_model_performance"],
    )
    assert filled.success
    after = _fetch(
        clean_db,
        "SELECT pred, label, outcome, realized_rr, outcome_at "
        "FROM signals.signals ORDER BY symbol, ts",
    )
    assert len(after) == 5 and all(r["outcome_at"] is not None for r in after)
    for row in after:
        if row["pred"] == "HOLD":
            assert (row["outcome"], row["realized_rr"]) == ("neutral", None)
        else:
            assert (row["outcome"], row["realized_rr"]) == ("loss", -1.0)
            assert row["label"] == ("SELL" if row["pred"] == "BUY" else "BUY")
    queued = _fetch(
        clean_db,
        "SELECT reason, requested_by, priority FROM ml.retrain_queue WHERE status = 'pending'",
    )
    assert [(q["requested_by"], q["priority"]) for q in queued] == [("degradation", 2)]
    assert "win rate 0.0% < 50.0%" in queued[0]["reason"]


def _write_adverse_candles(db: str, signals: list[dict[str, Any]]) -> None:
    """Bars after each signal's bar: 2 % against its prediction on the next bar."""
    rows: dict[tuple, tuple] = {}
    for s in signals:
        step = {"BUY": -0.02, "SELL": 0.02, "HOLD": 0.0}[s["pred"]]
        for k in range(0, SCOPE.horizon + 1):
            close = 100.0 * (1 + step) if k else 100.0
            ts = s["ts"] + timedelta(hours=k)
            rows[(s["symbol"], ts)] = (
                s["exchange"],
                s["symbol"],
                "1h",
                ts,
                100.0,
                max(100.0, close),
                min(100.0, close),
                close,
            )

    async def write(conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM market.candles WHERE exchange = 'synthetic'")
        await conn.executemany(
            "INSERT INTO market.candles (exchange, symbol, timeframe, ts, open, high, low, close,"
            " volume, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'test')",
            list(rows.values()),
        )

    _db(db, write)
