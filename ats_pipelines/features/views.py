"""SQL views over the lake for analysts: one DuckDB view per dataset.

``features_1m`` … ``features_4h``, ``labels_1m``, ``candles_1m`` … ``candles_1d`` and
``order_book_1m``, each over all of its files (every exchange, symbol and day). Used by
``ats features sql`` and the analyst example. In a DuckDB shell each is one ``CREATE VIEW …
AS SELECT * FROM read_parquet('.ats/lake/features/features_1m/*/*/*.parquet')``; ``ats features
sql --print-views`` prints them.
"""

from __future__ import annotations

import duckdb

from ats_pipelines.features import catalog as cat
from ats_pipelines.features.duck import sql_string
from ats_pipelines.features.export import BOOK_DATASET, candles_dataset
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake


def datasets(lake: Lake) -> dict[str, str]:
    """View name -> dataset of every dataset the lake has files for."""
    names = {f.name: f.dataset for f in cat.FAMILIES.values()}
    names[LabelSpec.name] = LabelSpec().dataset
    names |= {f"candles_{tf}": candles_dataset(tf) for tf in cat.EXPORT_TIMEFRAMES}
    names["order_book_1m"] = BOOK_DATASET
    return {
        view: ds for view, ds in names.items() if any(lake.dataset_dir(ds).glob("*/*/*.parquet"))
    }


def view_statements(lake: Lake) -> list[str]:
    """``CREATE VIEW`` statements (for a DuckDB shell) over the datasets present."""
    return [
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet("  # noqa: S608
        f"{sql_string(lake.glob(ds))}, hive_partitioning = false);"
        for view, ds in datasets(lake).items()
    ]


def register_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> list[str]:
    """Create the views on ``con``; returns their names."""
    made = []
    for view, ds in datasets(lake).items():
        con.read_parquet(lake.glob(ds), hive_partitioning=False).create_view(view)
        made.append(view)
    return made
