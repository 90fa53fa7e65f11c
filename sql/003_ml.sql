-- Machine learning: the retrain queue (the one door to training) and the model registry.

-- priority: 1 is the most urgent, 5 the least. One pending request per model scope: a second
-- request for the same scope coalesces into the first (see the partial unique index).
CREATE TABLE ml.retrain_queue (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope          text        NOT NULL DEFAULT 'default',
    signal_id      bigint,
    reason         text        NOT NULL,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL DEFAULT 'pending',
    priority       smallint    NOT NULL DEFAULT 3,
    started_at     timestamptz,
    completed_at   timestamptz,
    error_message  text,
    run_id         text,
    attempts       integer     NOT NULL DEFAULT 0,
    requested_by   text,
    config         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT retrain_queue_status CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT retrain_queue_priority CHECK (priority BETWEEN 1 AND 5),
    CONSTRAINT retrain_queue_reason_named CHECK (reason <> ''),
    CONSTRAINT retrain_queue_started CHECK (status = 'pending' OR started_at IS NOT NULL),
    CONSTRAINT retrain_queue_completed CHECK (status NOT IN ('completed', 'failed') OR completed_at IS NOT NULL),
    CONSTRAINT retrain_queue_failed_has_error CHECK (status <> 'failed' OR error_message IS NOT NULL)
);
CREATE UNIQUE INDEX retrain_queue_one_pending_per_scope ON ml.retrain_queue (scope) WHERE status = 'pending';
CREATE INDEX retrain_queue_claim_idx ON ml.retrain_queue (priority, inserted_at) WHERE status = 'pending';
CREATE INDEX retrain_queue_processing_idx ON ml.retrain_queue (started_at) WHERE status = 'processing';

CREATE TABLE ml.models (
    model_id        text        PRIMARY KEY,
    scope           text        NOT NULL,
    status          text        NOT NULL DEFAULT 'challenger',
    feature_service text        NOT NULL,
    features        text[]      NOT NULL,
    artifact_path   text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metrics         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    train_start     timestamptz,
    train_end       timestamptz,
    holdout_start   timestamptz,
    holdout_end     timestamptz,
    queue_id        bigint      REFERENCES ml.retrain_queue (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    promoted_at     timestamptz,
    retired_at      timestamptz,
    CONSTRAINT models_status CHECK (status IN ('challenger', 'champion', 'retired', 'rejected')),
    CONSTRAINT models_features_present CHECK (cardinality(features) > 0),
    CONSTRAINT models_train_window CHECK (train_end IS NULL OR train_start IS NULL OR train_end > train_start)
);
CREATE UNIQUE INDEX models_one_champion_per_scope ON ml.models (scope) WHERE status = 'champion';
CREATE INDEX models_scope_created_idx ON ml.models (scope, created_at DESC);
