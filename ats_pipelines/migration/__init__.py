"""Migration of the legacy Parquet/Feather/JSON candle cache into TimescaleDB.

discover (patterns, markets) → read (bounded batches) → normalise → validate → load (bulk
writer, one batch id and one transaction per file) → verify (counts, checksums, grid) →
archive; with a ledger (``ops.migration_ledger``) that makes every step resumable and every
file removable again (rollback by batch id).
"""
