-- Data quality: every evaluation of a quality check (Dagster asset checks and the quality
-- report's own runs) and the data-quality score per source and symbol over time. The report's
-- "last run" and "trend" columns read these tables; nothing else depends on them.

-- One row per check evaluation. run_id is the Dagster run id (or the report build's id), so a
-- retried step replaces its row instead of adding one.
CREATE TABLE ops.quality_check_runs (
    id            bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        text             NOT NULL,
    asset         text             NOT NULL,
    check_name    text             NOT NULL,
    partition     text             NOT NULL DEFAULT '',
    passed        boolean          NOT NULL,
    severity      text             NOT NULL,
    blocking      boolean          NOT NULL DEFAULT false,
    rows_checked  bigint           NOT NULL DEFAULT 0,
    coverage      double precision,
    failed        jsonb            NOT NULL DEFAULT '[]'::jsonb,
    window_start  timestamptz,
    window_end    timestamptz,
    evaluated_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT quality_check_runs_once UNIQUE (run_id, asset, check_name, partition),
    CONSTRAINT quality_check_runs_severity CHECK (severity IN ('ERROR', 'WARN')),
    CONSTRAINT quality_check_runs_rows CHECK (rows_checked >= 0),
    CONSTRAINT quality_check_runs_coverage CHECK (coverage IS NULL OR coverage >= 0),
    CONSTRAINT quality_check_runs_named CHECK (asset <> '' AND check_name <> '' AND run_id <> '')
);
CREATE INDEX quality_check_runs_recent_idx
    ON ops.quality_check_runs (asset, check_name, evaluated_at DESC);

-- The data-quality score of one dataset, source and symbol over a window: completeness
-- (coverage of the expected bars), freshness (age of the newest row), validity (share of rows
-- passing the suite's row rules and not quarantined), each in [0, 1], and their weighted score.
-- Keyed by the window's end (a minute), so recomputing the same window replaces the row.
CREATE TABLE ops.quality_scores (
    dataset       text             NOT NULL,
    exchange      text             NOT NULL,
    source        text             NOT NULL,
    symbol        text             NOT NULL,
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    rows          bigint           NOT NULL,
    completeness  double precision NOT NULL,
    freshness     double precision NOT NULL,
    validity      double precision NOT NULL,
    score         double precision NOT NULL,
    details       jsonb            NOT NULL DEFAULT '{}'::jsonb,
    computed_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, exchange, source, symbol, window_end),
    CONSTRAINT quality_scores_window CHECK (window_start < window_end),
    CONSTRAINT quality_scores_rows CHECK (rows >= 0),
    CONSTRAINT quality_scores_unit CHECK (
        completeness BETWEEN 0 AND 1 AND freshness BETWEEN 0 AND 1
        AND validity BETWEEN 0 AND 1 AND score BETWEEN 0 AND 1)
);
CREATE INDEX quality_scores_recent_idx ON ops.quality_scores (dataset, symbol, window_end DESC);
