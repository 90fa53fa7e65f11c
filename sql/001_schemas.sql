-- Schemas of the platform: market data, machine learning, signals, and operations (ledgers,
-- quarantine, watermarks of services). The migration runner keeps its own ledger in ats_meta.
CREATE SCHEMA IF NOT EXISTS market;
CREATE SCHEMA IF NOT EXISTS ml;
CREATE SCHEMA IF NOT EXISTS signals;
CREATE SCHEMA IF NOT EXISTS ops;

-- One sequence hands out batch ids to every writer (migration file, REST fetch, stream
-- segment), so a batch's rows can be found, verified and rolled back.
CREATE SEQUENCE IF NOT EXISTS ops.batch_id_seq;
