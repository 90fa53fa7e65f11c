-- Legacy-cache migration: what the ledger of 005_ops.sql lacks.
-- rows_existing: accepted rows whose key was already present (kept, not re-inserted), so that
--   rows_accepted = rows_duplicate + rows_inserted + rows_existing holds for every file.
-- verification: the per-file verification result (counts, checksums, grid gaps, off-grid rows).
-- timings: seconds per phase (read, validate, write, verify).
ALTER TABLE ops.migration_ledger
    ADD COLUMN IF NOT EXISTS root          text,
    ADD COLUMN IF NOT EXISTS relative_path text,
    ADD COLUMN IF NOT EXISTS file_format   text,
    ADD COLUMN IF NOT EXISTS price_type    text,
    ADD COLUMN IF NOT EXISTS rows_existing bigint  NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS attempts      integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS verification  jsonb   NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS timings       jsonb   NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX IF NOT EXISTS migration_ledger_path_idx ON ops.migration_ledger (file_path);
CREATE INDEX IF NOT EXISTS migration_ledger_status_idx ON ops.migration_ledger (status);

-- Rollback deletes a batch's rows by batch_id; funding_rates lacked the index the others have.
CREATE INDEX IF NOT EXISTS funding_rates_batch_idx ON market.funding_rates (batch_id)
    WHERE batch_id IS NOT NULL;

-- Files under a migration root that were not migrated, and why (no pattern matched, symbol
-- not resolvable, unsupported format). Refreshed by every discovery of that root.
CREATE TABLE IF NOT EXISTS ops.migration_unmatched (
    file_path      text        PRIMARY KEY,
    root           text        NOT NULL,
    relative_path  text        NOT NULL,
    file_size      bigint      NOT NULL,
    reason         text        NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS migration_unmatched_root_idx ON ops.migration_unmatched (root);
