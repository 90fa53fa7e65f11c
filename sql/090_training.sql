-- Training: liveness of claimed retrain requests.

-- A training run touches heartbeat_at while it works (after each Optuna trial); a claim whose
-- heartbeat (or, before the first beat, started_at) is older than the reclaim timeout belongs to
-- a crashed run and is handed back to the queue. Long but healthy runs are never reclaimed.
ALTER TABLE ml.retrain_queue ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz;

-- The degradation trigger reads a model's latest signals whose outcome is known.
CREATE INDEX IF NOT EXISTS signals_model_outcome_idx
    ON signals.signals (model_id, ts DESC) WHERE outcome IS NOT NULL;
