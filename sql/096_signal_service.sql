-- The live signal service (`ats signals run`): one row per running service, beaten every few
-- seconds with its stats; the signal_service_fresh check turns it into freshness in Dagster.
CREATE TABLE signals.service_heartbeats (
    service_id      text        PRIMARY KEY,
    analyzer_id     text        NOT NULL,
    coordinator_id  text        NOT NULL,
    exchange        text        NOT NULL,
    symbols         text[]      NOT NULL,
    timeframes      text[]      NOT NULL,
    pid             integer,
    host            text,
    started_at      timestamptz NOT NULL,
    last_beat       timestamptz NOT NULL,
    stats           jsonb       NOT NULL DEFAULT '{}'::jsonb
);
