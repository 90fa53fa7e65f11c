"""The project's offline store against Feast's reference (file/Dask) store on the same registry
objects and data, and online retrieval after materialisation.

The reference store drops an entity row when its key has feature rows but none within the TTL
(its left join is filtered afterwards); every other Feast store, and ours, return such a row
with null features. The frames are compared on the rows both return, and our extra rows are
checked to be exactly those, null in every view without a row within its TTL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features
from ats_pipelines.features.lake import Lake
from ats_pipelines.features.repo import build_repo
from ats_pipelines.features.store import materialize_views, open_store
from tests.features.conftest import (
    START,
    all_timeframes,
    feast_values,
    repo_copy,
    synthetic_book,
    synthetic_minutes,
    write_lake,
)

EXCHANGE = "binance"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
DAYS = [START.date(), START.date() + timedelta(days=1)]
KEY = ["symbol", "exchange", "event_timestamp"]
GAP = (START + timedelta(hours=30), START + timedelta(hours=31))  # BTC/USDT has no minutes


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    for seed, symbol in enumerate(SYMBOLS):
        minutes = synthetic_minutes(EXCHANGE, symbol, days=2, seed=seed)
        if symbol == SYMBOLS[0]:
            minutes = minutes.filter((pl.col("ts") < GAP[0]) | (pl.col("ts") >= GAP[1]))
        write_lake(lake, all_timeframes(minutes), synthetic_book(minutes, every=2))
        for tf in (*cat.HIGHER_TIMEFRAMES, cat.BASE_TIMEFRAME):
            build_features(
                lake, cat.family_of(tf), EXCHANGE, symbol, DAYS, datetime(2024, 6, 1, tzinfo=UTC)
            )
    _write_duplicates(lake)
    return lake


def _write_duplicates(lake: Lake) -> None:
    """A small source whose keys repeat timestamps with different created times."""
    base = START + timedelta(hours=1)
    rows = []
    for i in range(6):
        for version in range(3 if i % 2 == 0 else 1):
            rows.append(
                {
                    "symbol": SYMBOLS[0],
                    "exchange": EXCHANGE,
                    "event_timestamp": base + timedelta(minutes=10 * i),
                    "created_timestamp": base + timedelta(minutes=10 * i + 7 * version),
                    "score": float(100 * i + version),
                }
            )
    folder = lake.root / "extra"
    folder.mkdir()
    pl.DataFrame(rows).with_columns(
        pl.col("event_timestamp", "created_timestamp").dt.cast_time_unit("us")
    ).sample(fraction=1.0, shuffle=True, seed=1).write_parquet(folder / "scores.parquet")


def _objects(lake: Lake) -> list[Any]:
    from feast import FeatureView, Field, FileSource
    from feast.types import Float64

    repo = build_repo(lake.root)
    source = FileSource(
        name="scores_source",
        path=str(lake.root / "extra"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    scores = FeatureView(
        name="scores",
        entities=list(repo.entities.values()),
        ttl=timedelta(minutes=25),
        schema=[Field(name="score", dtype=Float64)],
        source=source,
    )
    return [*repo.objects(), source, scores]


@pytest.fixture(scope="module")
def stores(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from feast import FeatureStore

    out: dict[str, FeatureStore] = {}
    for name, kind in (("ours", None), ("reference", "file")):
        folder = tmp_path_factory.mktemp(name)
        repo = repo_copy(folder, kind) if kind else repo_copy(folder)
        store = open_store(repo, feast_values(folder))
        store.apply(_objects(lake))
        out[name] = store
    return out


@pytest.fixture(scope="module")
def entity_df() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 70
    offsets = rng.integers(0, 2 * 86400, n)
    frame = pd.DataFrame(
        {
            "symbol": rng.choice(SYMBOLS, n),
            "exchange": EXCHANGE,
            "event_timestamp": pd.to_datetime([START + timedelta(seconds=int(s)) for s in offsets]),
            "label": rng.choice(["BUY", "SELL", "HOLD"], n),
        }
    )
    special = pd.DataFrame(
        {
            "symbol": [SYMBOLS[0], SYMBOLS[0], SYMBOLS[1], "DOGE/USDT", SYMBOLS[1]],
            "exchange": EXCHANGE,
            "event_timestamp": pd.to_datetime(
                [
                    GAP[0] + timedelta(minutes=20),  # inside the gap: nothing within the 1m TTL
                    GAP[1] + timedelta(seconds=59),  # the first minute after the gap has not closed
                    START + timedelta(seconds=30),  # before the first bar closed
                    START + timedelta(hours=5),  # a key nobody has
                    START + timedelta(hours=6),  # exactly at a bar close
                ]
            ),
            "label": "HOLD",
        }
    )
    return pd.concat([frame, special]).drop_duplicates(KEY).reset_index(drop=True)


def _within_ttl(lake: Lake, view: str, ttl: timedelta, entity: pd.DataFrame) -> np.ndarray:
    rows = pl.read_parquet(lake.dataset_dir(f"features/{view}")).select("symbol", "event_timestamp")
    found = []
    for symbol, ts in zip(entity["symbol"], entity["event_timestamp"], strict=True):
        stamps = rows.filter(pl.col("symbol") == symbol)["event_timestamp"]
        ok = ((stamps <= ts) & (stamps >= ts - ttl)).any()
        found.append(bool(ok))
    return np.array(found)


def _compare(ours: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Assert equality on the common rows; return our rows the reference left out."""
    ours = ours.copy()
    ours["event_timestamp"] = pd.to_datetime(ours["event_timestamp"], utc=True)
    ref = ref.copy()
    ref["event_timestamp"] = pd.to_datetime(ref["event_timestamp"], utc=True)
    assert sorted(ours.columns) == sorted(ref.columns)
    merged = ours.merge(ref[KEY], on=KEY, how="left", indicator=True)
    extra = merged.loc[merged["_merge"] == "left_only"].drop(columns="_merge")
    common = ours.merge(ref[KEY], on=KEY).sort_values(KEY).reset_index(drop=True)
    expected = ref.sort_values(KEY).reset_index(drop=True)[common.columns]
    assert len(common) == len(ref)
    pd.testing.assert_frame_equal(
        common, expected, check_dtype=False, check_exact=False, rtol=1e-12
    )
    return extra


def test_signals_service_equals_the_reference(
    stores: dict, lake: Lake, entity_df: pd.DataFrame
) -> None:
    ours = (
        stores["ours"]
        .get_historical_features(
            entity_df=entity_df, features=stores["ours"].get_feature_service("signals_v1")
        )
        .to_df()
    )
    ref = (
        stores["reference"]
        .get_historical_features(
            entity_df=entity_df, features=stores["reference"].get_feature_service("signals_v1")
        )
        .to_df()
    )
    # every entity row, in the order given, with its own columns
    assert (
        ours["event_timestamp"].tolist()
        == pd.to_datetime(entity_df["event_timestamp"], utc=True).tolist()
    )
    assert ours["label"].tolist() == entity_df["label"].tolist()
    assert ours["ret_1"].notna().sum() > 50
    extra = _compare(ours, ref)
    ttl = cat.BASE_FAMILY.ttl
    found = _within_ttl(lake, "features_1m", ttl, extra)
    assert not found.any() and len(extra) >= 3
    assert bool(extra[list(cat.BASE_FAMILY.features)].isna().to_numpy().all())


def test_multi_view_service_with_full_names_equals_the_reference(
    stores: dict, lake: Lake, entity_df: pd.DataFrame
) -> None:
    kwargs = {"entity_df": entity_df, "full_feature_names": True}
    ours = (
        stores["ours"]
        .get_historical_features(
            features=stores["ours"].get_feature_service("context_v1"), **kwargs
        )
        .to_df()
    )
    ref = (
        stores["reference"]
        .get_historical_features(
            features=stores["reference"].get_feature_service("context_v1"), **kwargs
        )
        .to_df()
    )
    assert "features_4h__rsi_14" in ours.columns
    extra = _compare(ours, ref)
    for tf in cat.HIGHER_TIMEFRAMES:
        family = cat.family_of(tf)
        found = _within_ttl(lake, family.name, family.ttl, extra)
        cols = [f"{family.name}__{f}" for f in family.features]
        assert extra.loc[~found, cols].isna().all().all()


def _documented_rule(
    source: pl.DataFrame, entity: pd.DataFrame, ttl: timedelta, created_cutoff: bool
) -> list[float | None]:
    """Feast's rule by brute force: latest event time within the TTL, then latest created."""
    out: list[float | None] = []
    for ts in pd.to_datetime(entity["event_timestamp"], utc=True):
        when = ts.to_pydatetime()
        rows = source.filter(
            (pl.col("event_timestamp") <= when) & (pl.col("event_timestamp") >= when - ttl)
        )
        if created_cutoff:
            rows = rows.filter(pl.col("created_timestamp") <= when)
        best = rows.sort("event_timestamp", "created_timestamp").tail(1)
        out.append(best["score"][0] if best.height else None)
    return out


@pytest.mark.parametrize("created_cutoff", [False, True])
def test_created_timestamp_ties_and_cutoff(stores: dict, lake: Lake, created_cutoff: bool) -> None:
    """Ours follows the documented rule on every row. The reference agrees wherever one row
    alone qualifies; on ties it sorts by created then by event time with Dask's sort, which
    does not keep the first order, so which version it returns there is arbitrary."""
    base = START + timedelta(hours=1)
    entity = pd.DataFrame(
        {
            "symbol": SYMBOLS[0],
            "exchange": EXCHANGE,
            "event_timestamp": pd.to_datetime(
                [base + timedelta(minutes=m) for m in (0, 3, 9, 12, 21, 33, 44, 49, 51, 80)]
            ),
        }
    )
    ours, ref = (
        store.get_historical_features(
            entity_df=entity, features=["scores:score"], filter_by_created_timestamp=created_cutoff
        ).to_df()
        for store in (stores["ours"], stores["reference"])
    )
    source = pl.read_parquet(lake.root / "extra" / "scores.parquet")
    expected = _documented_rule(source, entity, timedelta(minutes=25), created_cutoff)
    assert [None if pd.isna(v) else v for v in ours["score"]] == expected
    at = pd.Timestamp(base + timedelta(minutes=3))
    by_time = ours.assign(event_timestamp=pd.to_datetime(ours["event_timestamp"], utc=True))
    # at 01:03 the row of 01:00 has versions created 01:00, 01:07 and 01:14
    assert by_time.set_index("event_timestamp")["score"][at] == (0.0 if created_cutoff else 2.0)
    single = {
        float(v)
        for v in source.group_by("event_timestamp")
        .len()
        .join(source, on="event_timestamp")
        .filter(pl.col("len") == 1)["score"]
    }
    ref_scores = dict(
        zip(pd.to_datetime(ref["event_timestamp"], utc=True), ref["score"], strict=True)
    )
    agreed = 0
    for ts, value in zip(
        pd.to_datetime(entity["event_timestamp"], utc=True), expected, strict=True
    ):
        if value in single:
            assert ref_scores[ts] == value
            agreed += 1
    assert agreed >= 3


def test_entity_rows_as_sql_equal_the_dataframe(
    stores: dict, lake: Lake, entity_df: pd.DataFrame
) -> None:
    path = lake.root / "entities.parquet"
    entity_df.to_parquet(path)
    store = stores["ours"]
    features = ["features_1m:rsi_14", "features_1h:macd_hist"]
    from_sql = store.get_historical_features(
        entity_df=f"SELECT * FROM read_parquet('{path}')", features=features
    ).to_df()
    from_frame = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    pd.testing.assert_frame_equal(from_sql, from_frame, check_dtype=False)
    assert (
        "ASOF LEFT JOIN"
        in store.get_historical_features(entity_df=entity_df, features=features).to_sql()
    )


def test_online_features_after_materialisation_are_the_latest(stores: dict, lake: Lake) -> None:
    store = stores["ours"]
    results = materialize_views(store, list(cat.FAMILIES))
    assert {r.mode for r in results} == {"initial"}
    rows = [{"symbol": s, "exchange": EXCHANGE} for s in (*SYMBOLS, "DOGE/USDT")]
    online = store.get_online_features(
        features=store.get_feature_service("signals_v1"), entity_rows=rows
    ).to_dict()
    offline = pl.read_parquet(lake.dataset_dir(cat.BASE_FAMILY.dataset))
    for i, symbol in enumerate(SYMBOLS):
        latest = offline.filter(pl.col("symbol") == symbol).sort("event_timestamp").tail(1)
        for name in cat.BASE_FAMILY.features:
            assert online[name][i] == pytest.approx(latest[name][0], nan_ok=True), name
    assert all(online[name][2] is None for name in ("ret_1", "rsi_14"))
    again = materialize_views(store, ["features_1m"])
    assert again[0].mode == "incremental"


def test_entity_rows_without_a_join_key_are_refused_by_name(stores: dict) -> None:
    from ats_pipelines.features.offline_store import OfflineStoreError

    entity = pd.DataFrame({"symbol": [SYMBOLS[0]], "event_timestamp": [pd.Timestamp(START)]})
    with pytest.raises(OfflineStoreError, match=r"lacks exchange.*'features_1m'"):
        stores["ours"].get_historical_features(entity_df=entity, features=["features_1m:ret_1"])


def test_retrieval_without_entity_rows_equals_the_reference(stores: dict) -> None:
    """No entity_df: every key's features as of end_date (within the TTL)."""
    end = START + timedelta(hours=30, minutes=30)  # BTC/USDT is inside its gap then
    kwargs = {
        "features": ["features_1h:rsi_14", "features_1h:ret_1"],
        "start_date": START,
        "end_date": end,
    }
    ours = stores["ours"].get_historical_features(**kwargs).to_df()
    ref = stores["reference"].get_historical_features(**kwargs).to_df()
    assert sorted(ours["symbol"]) == sorted(ref["symbol"]) == sorted(SYMBOLS)
    ours = ours.sort_values("symbol").reset_index(drop=True)
    ref = ref.sort_values("symbol").reset_index(drop=True)[ours.columns]
    pd.testing.assert_frame_equal(ours, ref, check_dtype=False)


@pytest.mark.parametrize("as_sql", [False, True])
def test_no_entity_rows_give_an_empty_frame(
    stores: dict, lake: Lake, entity_df: pd.DataFrame, as_sql: bool
) -> None:
    """A window without labels is an empty training set, not a DuckDB binder error (the
    bounds of no rows are NULL)."""
    empty = entity_df.iloc[0:0]
    entity: pd.DataFrame | str = empty
    if as_sql:
        path = lake.root / "no_entities.parquet"
        empty.to_parquet(path)
        entity = f"SELECT * FROM read_parquet('{path}')"
    store = stores["ours"]
    frame = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service("signals_v1")
    ).to_df()
    assert len(frame) == 0
    assert {"symbol", "event_timestamp", "label", "rsi_14"} <= set(frame.columns)
