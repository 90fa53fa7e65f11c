-- requires: timescaledb
-- fallback: plain tables with their B-tree primary keys; retention by the Dagster retention
--           schedule deleting old rows instead of drop_chunks.
-- Time-series tables become hypertables; chunk sizes keep a few chunks in memory on a small
-- machine. Default time indexes are not created: every primary key already leads to ts.
SELECT create_hypertable('market.candles', by_range('ts', INTERVAL '7 days'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.reference_candles', by_range('ts', INTERVAL '30 days'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.funding_rates', by_range('ts', INTERVAL '90 days'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.trades', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.order_book_snapshots', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.order_book_1s_agg', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.order_book_1m_agg', by_range('ts', INTERVAL '7 days'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
SELECT create_hypertable('market.trade_flow_1m', by_range('ts', INTERVAL '7 days'),
                         create_default_indexes => false, migrate_data => true, if_not_exists => true);
