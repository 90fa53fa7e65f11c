"""The Feast objects of ``feature_repo/``: entities, sources, feature views and services.

Built from the feature catalog and the lake root, so the Feast definitions, the feature files
and the Dagster assets agree by construction. ``feature_repo/definitions.py`` (read by the
``feast`` CLI) and the ``feast_registry`` asset both call :func:`build_repo`.

* entities ``symbol`` and ``exchange`` (every view is keyed by both);
* one ``FileSource`` and one feature view per timeframe family (``features_1m`` …) over the
  family's lake directory; ``event_timestamp`` is the bar's close, ``created_timestamp`` when
  the row was computed, TTL two bars;
* versioned feature services: ``signals_v1`` (the 1-minute row with its order book, time of
  day and higher-timeframe context) and ``context_v1`` (the 5m/15m/1h/4h views together; their
  feature names repeat across views, so ask with ``full_feature_names=True``).

A new feature set is a new service version (``signals_v2``): models trained on ``signals_v1``
keep resolving the exact features they were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

from ats_pipelines.features import catalog as cat

OWNER = "features"


@dataclass(frozen=True)
class FeastRepo:
    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]

    def objects(self) -> list[Entity | FileSource | FeatureView | FeatureService]:
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.views.values(),
            *self.services.values(),
        ]


def build_repo(lake_root: Path) -> FeastRepo:
    """The repository's objects, reading features from the lake at ``lake_root``."""
    symbol = Entity(
        name="symbol",
        join_keys=["symbol"],
        value_type=ValueType.STRING,
        description="ccxt unified symbol, e.g. BTC/USDT",
    )
    exchange = Entity(
        name="exchange",
        join_keys=["exchange"],
        value_type=ValueType.STRING,
        description="ccxt exchange id, e.g. binance",
    )
    sources, views = {}, {}
    for family in cat.FAMILIES.values():
        source = FileSource(
            name=f"{family.name}_source",
            path=str(lake_root / family.dataset),
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            description=f"{family.timeframe} feature rows in the Parquet lake, one file per "
            "exchange, symbol and day",
        )
        sources[source.name] = source
        views[family.name] = FeatureView(
            name=family.name,
            entities=[symbol, exchange],
            ttl=family.ttl,
            # Entity columns spelled out: the view is then complete as written, and equal to
            # its registered form without Feast's inference (apply_repo compares them).
            schema=[
                Field(name="symbol", dtype=String),
                Field(name="exchange", dtype=String),
                *(
                    Field(name=f, dtype=Int64 if f in cat.INT_FEATURES else Float64)
                    for f in family.features
                ),
            ],
            source=source,
            online=True,
            description=f"Features of closed {family.timeframe} bars (event time = bar close)",
            tags={"timeframe": family.timeframe},
            owner=OWNER,
        )
    services = {
        name: FeatureService(
            name=name,
            features=[views[v] for v in members],
            tags={"version": name.rsplit("_v", 1)[1]},
            owner=OWNER,
            description=f"{name}: " + ", ".join(members),
        )
        for name, members in cat.SERVICES.items()
    }
    return FeastRepo({"symbol": symbol, "exchange": exchange}, sources, views, services)
