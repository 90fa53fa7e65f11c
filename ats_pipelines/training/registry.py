"""The model registry: artifacts on disk, one ``ml.models`` row per model, champion promotion.

An artifact is a folder ``<models_dir>/<model_id>/`` holding the LightGBM text model
(``model.txt``), the ordered feature list, the parameters, the holdout metrics and the drift
reference of the training window. A model id is ``<scope>-q<queue id>``: retraining the same
request (a reclaimed run) rewrites the same artifact and row, so registration is idempotent.

Status: ``challenger`` when registered; ``champion`` after the promotion checks passed (at most
one per scope, enforced by a partial unique index); ``retired`` when a newer champion replaced
it; ``rejected`` when a promotion check failed (the reasons are kept in ``metrics``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import lightgbm as lgb
import numpy as np
import pandas as pd

ARTIFACT_FILES = (
    "model.txt",
    "features.json",
    "params.json",
    "metrics.json",
    "drift_reference.json",
)


class RegistryError(RuntimeError):
    """A model, artifact or promotion is not what the caller expected."""


def model_id_for(scope: str, queue_id: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", scope).strip("_") or "scope"
    return f"{slug}-q{queue_id}"


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    scope: str
    status: str
    feature_service: str
    features: list[str]
    artifact_path: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    train_start: datetime | None
    train_end: datetime | None
    holdout_start: datetime | None
    holdout_end: datetime | None
    queue_id: int | None
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None


def _record(row: asyncpg.Record) -> ModelRecord:
    data = dict(row)
    data["params"] = json.loads(data["params"] or "{}")
    data["metrics"] = json.loads(data["metrics"] or "{}")
    data["features"] = list(data["features"])
    return ModelRecord(**data)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | pd.Timestamp | np.datetime64):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: object) -> str:
    """JSON with NaN as null (PostgreSQL's jsonb refuses NaN)."""
    text = json.dumps(value, default=_json_default, allow_nan=True)
    return json.dumps(json.loads(text, parse_constant=lambda _c: None), allow_nan=False)


def save_artifact(
    models_dir: Path,
    model_id: str,
    booster: lgb.Booster,
    features: list[str],
    params: dict[str, Any],
    metrics: dict[str, Any],
    drift_reference: dict[str, Any],
) -> Path:
    """Write the artifact folder atomically (a temporary folder renamed into place)."""
    target = models_dir / model_id
    staging = models_dir / f".{model_id}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    booster.save_model(str(staging / "model.txt"))
    for name, value in (
        ("features.json", features),
        ("params.json", params),
        ("metrics.json", metrics),
        ("drift_reference.json", drift_reference),
    ):
        (staging / name).write_text(dumps(value) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


@dataclass
class LoadedModel:
    """A registered model ready to score feature frames."""

    model_id: str
    booster: lgb.Booster
    features: list[str]
    drift_reference: dict[str, Any]

    def predict_proba(self, X: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise RegistryError(f"model {self.model_id}: features missing: {missing}")
        values = X[self.features].to_numpy(np.float32)
        return np.asarray(self.booster.predict(values, num_threads=num_threads)).reshape(len(X), -1)


def load_model(record: ModelRecord) -> LoadedModel:
    path = Path(record.artifact_path)
    absent = [f for f in ARTIFACT_FILES if not (path / f).exists()]
    if absent:
        raise RegistryError(f"model {record.model_id}: artifact {path} lacks {absent}")
    features = json.loads((path / "features.json").read_text())
    if features != record.features:
        raise RegistryError(
            f"model {record.model_id}: {path}/features.json differs from the registry row"
        )
    return LoadedModel(
        model_id=record.model_id,
        booster=lgb.Booster(model_file=str(path / "model.txt")),
        features=features,
        drift_reference=json.loads((path / "drift_reference.json").read_text()),
    )


_COLUMNS = (
    "model_id, scope, status, feature_service, features, artifact_path, params, metrics, "
    "train_start, train_end, holdout_start, holdout_end, queue_id, created_at, "
    "promoted_at, retired_at"
)


async def register(
    conn: asyncpg.Connection,
    *,
    model_id: str,
    scope: str,
    feature_service: str,
    features: list[str],
    artifact_path: Path,
    params: dict[str, Any],
    metrics: dict[str, Any],
    train_window: tuple[datetime, datetime],
    holdout_window: tuple[datetime, datetime],
    queue_id: int | None,
) -> ModelRecord:
    """Insert the model as a challenger, or refresh a challenger/rejected row of the same id."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO ml.models AS m (model_id, scope, status, feature_service, features,
            artifact_path, params, metrics, train_start, train_end, holdout_start, holdout_end,
            queue_id)
        VALUES ($1, $2, 'challenger', $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12)
        ON CONFLICT (model_id) DO UPDATE SET
            feature_service = EXCLUDED.feature_service, features = EXCLUDED.features,
            artifact_path = EXCLUDED.artifact_path, params = EXCLUDED.params,
            metrics = EXCLUDED.metrics, train_start = EXCLUDED.train_start,
            train_end = EXCLUDED.train_end, holdout_start = EXCLUDED.holdout_start,
            holdout_end = EXCLUDED.holdout_end, status = 'challenger', created_at = now()
        WHERE m.status IN ('challenger', 'rejected')
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - the column list is a constant
        model_id,
        scope,
        feature_service,
        features,
        str(artifact_path),
        dumps(params),
        dumps(metrics),
        *train_window,
        *holdout_window,
        queue_id,
    )
    if row is None:
        current = await get_model(conn, model_id)
        raise RegistryError(
            f"model {model_id} is already {current.status if current else '?'};"
            " a champion or retired model is never overwritten"
        )
    return _record(row)


async def get_model(conn: asyncpg.Connection, model_id: str) -> ModelRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM ml.models WHERE model_id = $1", model_id)  # noqa: S608
    return None if row is None else _record(row)


async def champion(conn: asyncpg.Connection, scope: str) -> ModelRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM ml.models WHERE scope = $1 AND status = 'champion'",  # noqa: S608
        scope,
    )
    return None if row is None else _record(row)


async def list_models(
    conn: asyncpg.Connection, scope: str | None = None, limit: int = 20
) -> list[ModelRecord]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ml.models WHERE ($1::text IS NULL OR scope = $1) "  # noqa: S608
        "ORDER BY created_at DESC LIMIT $2",
        scope,
        limit,
    )
    return [_record(r) for r in rows]


async def promote(
    conn: asyncpg.Connection, model_id: str, *, expected_champion: str | None
) -> ModelRecord:
    """Make ``model_id`` its scope's champion, retiring the current one.

    ``expected_champion`` is the champion the promotion checks compared against; if another
    model became champion meanwhile the comparison is void and the promotion is refused.
    """
    async with conn.transaction():
        model = await get_model(conn, model_id)
        if model is None:
            raise RegistryError(f"model {model_id} is not registered")
        # serialise promotions of one scope
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ml.models:' || $1))", model.scope
        )
        model = await get_model(conn, model_id)
        assert model is not None
        if model.status == "champion":
            return model
        if model.status != "challenger":
            raise RegistryError(
                f"model {model_id} is {model.status}; only a challenger can be promoted"
            )
        current = await champion(conn, model.scope)
        current_id = current.model_id if current else None
        if current_id != expected_champion:
            raise RegistryError(
                f"scope {model.scope}: champion is {current_id}, the checks compared with "
                f"{expected_champion}; retrain or re-run the checks"
            )
        if current is not None:
            await conn.execute(
                "UPDATE ml.models SET status = 'retired', retired_at = now() WHERE model_id = $1",
                current.model_id,
            )
        await conn.execute(
            "UPDATE ml.models SET status = 'champion', promoted_at = now() WHERE model_id = $1",
            model_id,
        )
    promoted = await get_model(conn, model_id)
    assert promoted is not None
    return promoted


async def reject(conn: asyncpg.Connection, model_id: str, reasons: list[str]) -> None:
    """Mark a challenger rejected, keeping why (idempotent)."""
    await conn.execute(
        "UPDATE ml.models SET status = 'rejected', "
        "metrics = metrics || jsonb_build_object('rejected_because', $2::jsonb) "
        "WHERE model_id = $1 AND status IN ('challenger', 'rejected')",
        model_id,
        json.dumps(reasons),
    )


async def retire_champion(conn: asyncpg.Connection, scope: str, reason: str) -> str | None:
    """Retire the scope's champion by hand (a rollback, or the demo resetting its scope);
    the next challenger that passes the checks becomes champion. Returns the retired id."""
    return await conn.fetchval(
        "UPDATE ml.models SET status = 'retired', retired_at = now(), "
        "metrics = metrics || jsonb_build_object('retired_because', $2::text) "
        "WHERE scope = $1 AND status = 'champion' RETURNING model_id",
        scope,
        reason,
    )
