"""Open, apply and materialise the Feast store of ``feature_repo/``.

``feature_store.yaml`` carries ``${VAR}`` placeholders. The ``feast`` CLI expands them from
the environment; here they are filled from explicit values (the Dagster resource's
configuration), so nothing has to be exported into the process environment.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from feast import FeatureStore, FeatureView, RepoConfig

from ats_pipelines.features.duck import connect
from ats_pipelines.features.offline_store import q, source_files
from ats_pipelines.features.repo import FeastRepo

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class FeastSetupError(RuntimeError):
    """The Feast repository cannot be opened as configured; names the file or variable."""


def expand(text: str, values: Mapping[str, str], origin: str) -> str:
    """Replace every ``${NAME}`` in ``text``; a name without a value is an error."""
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise FeastSetupError(f"{origin}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m[1]], text)


def open_store(
    repo_path: Path, values: Mapping[str, str], yaml_file: str = "feature_store.yaml"
) -> FeatureStore:
    """A ``FeatureStore`` on ``repo_path`` with the YAML's placeholders filled from ``values``."""
    path = repo_path / yaml_file
    try:
        text = path.read_text()
    except OSError as exc:
        raise FeastSetupError(f"{path}: cannot read the Feast configuration ({exc})") from exc
    raw = yaml.safe_load(expand(text, values, str(path)))
    config = RepoConfig(**raw)
    config.repo_path = repo_path
    return FeatureStore(repo_path=str(repo_path), config=config)


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)  # kind:name written to the registry
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _same(registered: object, wanted: object) -> bool:
    """Equal definitions: what materialisation recorded on a registered view is not part of it."""
    if isinstance(registered, FeatureView):
        registered = copy.copy(registered)
        registered.materialization_intervals = []
    return registered == wanted


def _label(obj: object) -> str:
    return f"{type(obj).__name__}:{getattr(obj, 'name', '?')}"


def apply_repo(store: FeatureStore, repo: FeastRepo) -> ApplyResult:
    """Register the repository's objects; remove registered ones it no longer defines.

    Objects equal to their registered version are left alone, so an unchanged repository
    applies nothing (the registry is written only when definitions change).
    """
    project = store.project
    existing = {
        "Entity": {e.name: e for e in store.list_entities()},
        "FileSource": {d.name: d for d in store.list_data_sources()},
        "FeatureView": {v.name: v for v in store.list_feature_views()},
        "FeatureService": {s.name: s for s in store.list_feature_services()},
    }
    result = ApplyResult()
    changed = []
    wanted: dict[str, set[str]] = {kind: set() for kind in existing}
    for obj in repo.objects():
        kind = type(obj).__name__
        wanted.setdefault(kind, set()).add(obj.name)
        registered = existing.get(kind, {}).get(obj.name)
        if registered is not None and _same(registered, obj):
            result.unchanged.append(_label(obj))
        else:
            changed.append(obj)
            result.applied.append(_label(obj))
    stale = [
        obj
        for kind, objs in existing.items()
        for name, obj in objs.items()
        if name not in wanted.get(kind, set())
    ]
    result.deleted = [_label(o) for o in stale]
    if changed or stale:
        store.apply(changed, objects_to_delete=stale, partial=False)
    log.info(
        "event=feast_apply project=%s applied=%d deleted=%d unchanged=%d",
        project,
        len(result.applied),
        len(result.deleted),
        len(result.unchanged),
    )
    return result


def latest_event_time(store: FeatureStore, view: str) -> datetime | None:
    """The latest ``timestamp_field`` value in a view's offline source (None: no rows yet)."""
    fv = store.get_feature_view(view)
    source = fv.batch_source
    if source is None:
        return None
    try:
        files = source_files(source, store.repo_path)
    except ValueError:
        return None
    con = connect()
    try:
        con.read_parquet(files, hive_partitioning=False).create_view("src")
        row = con.execute(f"SELECT max({q(source.timestamp_field)}) FROM src").fetchall()[0]  # noqa: S608
    finally:
        con.close()
    return row[0] if row else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@dataclass
class MaterializeResult:
    view: str
    start: datetime | None
    end: datetime | None
    mode: str  # initial | incremental | empty


def materialize_views(store: FeatureStore, views: Sequence[str]) -> list[MaterializeResult]:
    """Bring the online store up to the latest offline rows of ``views``.

    ``materialize-incremental`` from where the last run ended; a view never materialised
    starts one TTL before its latest row (older rows could not be served anyway), which also
    covers history whose latest row is long past.
    """
    out = []
    for name in views:
        end = latest_event_time(store, name)
        if end is None:
            out.append(MaterializeResult(name, None, None, "empty"))
            continue
        end = end + timedelta(microseconds=1)
        fv = store.get_feature_view(name)
        # Feast prints coloured progress and tqdm bars; the result is logged as one line.
        with _quiet():
            if fv.most_recent_end_time is None:
                start = end - (fv.ttl or timedelta(days=1))
                store.materialize(start_date=start, end_date=end, feature_views=[name])
                out.append(MaterializeResult(name, start, end, "initial"))
            else:
                start = fv.most_recent_end_time
                store.materialize_incremental(end_date=end, feature_views=[name])
                out.append(MaterializeResult(name, start, end, "incremental"))
        log.info(
            "event=feast_materialize view=%s mode=%s start=%s end=%s",
            name,
            out[-1].mode,
            start,
            end,
        )
    return out
