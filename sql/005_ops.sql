-- Operations: quarantine of rejected input, the legacy-cache migration ledger, stream heartbeats.

-- Every rejected input row, with the rule it broke and where it came from. row_hash makes
-- re-running the same input quarantine each bad row once.
CREATE TABLE ops.quarantine (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset         text        NOT NULL,
    source          text        NOT NULL,
    rule            text        NOT NULL,
    reason          text        NOT NULL,
    location        text,
    exchange        text,
    symbol          text,
    timeframe       text,
    ts              timestamptz,
    payload         jsonb       NOT NULL,
    row_hash        text        NOT NULL,
    batch_id        bigint,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quarantine_once UNIQUE (dataset, source, rule, row_hash),
    CONSTRAINT quarantine_dataset CHECK (dataset IN ('candles', 'reference_candles', 'funding_rates', 'trades', 'order_book', 'signals', 'other')),
    CONSTRAINT quarantine_rule_named CHECK (rule <> '' AND reason <> '')
);
CREATE INDEX quarantine_batch_idx ON ops.quarantine (batch_id) WHERE batch_id IS NOT NULL;

-- One row per legacy file (path + content checksum); batch_id tags every row the file inserted.
CREATE TABLE ops.migration_ledger (
    batch_id           bigint      PRIMARY KEY DEFAULT nextval('ops.batch_id_seq'),
    file_path          text        NOT NULL,
    file_size          bigint      NOT NULL,
    file_checksum      text        NOT NULL,
    dataset            text,
    exchange           text,
    symbol             text,
    timeframe          text,
    market_type        text,
    status             text        NOT NULL DEFAULT 'pending',
    rows_read          bigint      NOT NULL DEFAULT 0,
    rows_accepted      bigint      NOT NULL DEFAULT 0,
    rows_quarantined   bigint      NOT NULL DEFAULT 0,
    rows_duplicate     bigint      NOT NULL DEFAULT 0,
    rows_inserted      bigint      NOT NULL DEFAULT 0,
    first_ts           timestamptz,
    last_ts            timestamptz,
    source_checksum    text,
    loaded_checksum    text,
    assumptions        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error              text,
    archived_path      text,
    started_at         timestamptz,
    finished_at        timestamptz,
    verified_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT migration_ledger_file_once UNIQUE (file_path, file_checksum),
    CONSTRAINT migration_ledger_status CHECK (status IN ('pending', 'loading', 'loaded', 'verified', 'failed', 'rolled_back', 'archived')),
    CONSTRAINT migration_ledger_counts CHECK (rows_read >= 0 AND rows_accepted >= 0 AND rows_quarantined >= 0 AND rows_duplicate >= 0 AND rows_inserted >= 0),
    CONSTRAINT migration_ledger_failed_has_error CHECK (status NOT IN ('failed', 'rolled_back') OR error IS NOT NULL)
);

-- One row per streaming shard, beaten every few seconds; a sensor turns it into freshness.
CREATE TABLE ops.stream_heartbeats (
    shard          text        PRIMARY KEY,
    exchange       text        NOT NULL,
    symbols        text[]      NOT NULL,
    pid            integer,
    host           text,
    started_at     timestamptz NOT NULL,
    last_beat      timestamptz NOT NULL,
    last_trade_ts  timestamptz,
    stats          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
