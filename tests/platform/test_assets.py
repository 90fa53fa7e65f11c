"""The database_schema asset, materialised for real against a fresh database."""

from __future__ import annotations

import dagster as dg

from ats_pipelines.defs.platform.assets import database_schema
from ats_pipelines.orchestration.resources.timescale import TimescaleResource


def test_materialising_the_schema_reports_edition_and_tables(
    make_database, server_license: str
) -> None:
    url = make_database()
    resource = TimescaleResource(database_url=url)
    first = dg.materialize([database_schema], resources={"timescale": resource})
    second = dg.materialize([database_schema], resources={"timescale": resource})
    assert first.success and second.success
    meta = {
        k: v.value
        for k, v in first.asset_materializations_for_node("database_schema")[0].metadata.items()
    }
    again = second.asset_materializations_for_node("database_schema")[0].metadata
    assert meta["edition"] == server_license  # apache in CI, timescale on Community
    assert "010_hypertables.timescaledb.sql" in list(meta["applied_now"])  # type: ignore[arg-type]
    assert int(meta["tables"]) >= 20  # type: ignore[arg-type]
    assert "market.candles" in str(meta["table_inventory"])
    assert again["applied_now"].value == []
    assert "@" not in str(meta["server"])  # no user or password in metadata
