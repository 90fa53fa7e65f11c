"""Market-data logic without Dagster: REST ingestion, gap detection and repair, rollups,
order-book and trade aggregation, retention. ``ats_pipelines.defs.market_data`` wires it up."""
