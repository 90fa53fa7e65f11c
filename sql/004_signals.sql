-- Signals: model predictions (the seed's signals table), trend analyzers' detections, and the
-- coordinator's decisions, with the watermarks that make each trigger exactly-once.

-- pred: the predicted class; proba: its probability; label: the realised class, filled with
-- outcome and realized_rr once the label horizon has passed. One row per bar and model.
CREATE TABLE signals.signals (
    id             bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts             timestamptz      NOT NULL,
    exchange       text             NOT NULL,
    symbol         text             NOT NULL,
    tf             text             NOT NULL,
    model_id       text             NOT NULL REFERENCES ml.models (model_id),
    pred           text             NOT NULL,
    proba          double precision NOT NULL,
    probas         jsonb,
    label          text,
    features       jsonb            NOT NULL DEFAULT '{}'::jsonb,
    latency_ms     double precision,
    market_regime  text,
    outcome        text,
    realized_rr    double precision,
    outcome_at     timestamptz,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT signals_one_per_bar_and_model UNIQUE (exchange, symbol, tf, ts, model_id),
    CONSTRAINT signals_pred CHECK (pred IN ('BUY', 'SELL', 'HOLD')),
    CONSTRAINT signals_label CHECK (label IS NULL OR label IN ('BUY', 'SELL', 'HOLD')),
    CONSTRAINT signals_proba_range CHECK (proba >= 0 AND proba <= 1),
    CONSTRAINT signals_latency_nonnegative CHECK (latency_ms IS NULL OR latency_ms >= 0),
    CONSTRAINT signals_outcome CHECK (outcome IS NULL OR outcome IN ('win', 'loss', 'neutral'))
);
CREATE INDEX signals_model_ts_idx ON signals.signals (model_id, ts DESC);
CREATE INDEX signals_pending_outcome_idx ON signals.signals (ts) WHERE outcome IS NULL;

ALTER TABLE ml.retrain_queue
    ADD CONSTRAINT retrain_queue_signal_fk FOREIGN KEY (signal_id) REFERENCES signals.signals (id);

-- ts is the open time of the bar on which the analyzer confirmed the signal.
CREATE TABLE signals.detected_signals (
    id           bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    analyzer_id  text             NOT NULL,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    ts           timestamptz      NOT NULL,
    signal_type  text             NOT NULL,
    price        double precision NOT NULL,
    details      jsonb            NOT NULL DEFAULT '{}'::jsonb,
    detected_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT detected_signals_natural_key UNIQUE (analyzer_id, exchange, symbol, timeframe, ts, signal_type),
    CONSTRAINT detected_signals_type CHECK (signal_type IN ('uptrendStart', 'downtrendStart')),
    CONSTRAINT detected_signals_price_positive CHECK (price > 0)
);
CREATE INDEX detected_signals_symbol_ts_idx ON signals.detected_signals (exchange, symbol, ts);

CREATE TABLE signals.analyzer_watermarks (
    analyzer_id        text        NOT NULL,
    exchange           text        NOT NULL,
    symbol             text        NOT NULL,
    timeframe          text        NOT NULL,
    last_processed_ts  timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (analyzer_id, exchange, symbol, timeframe)
);

CREATE TABLE signals.coordinator_watermarks (
    coordinator_id  text        PRIMARY KEY,
    last_signal_id  bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coordinator_watermarks_nonnegative CHECK (last_signal_id >= 0)
);

CREATE TABLE signals.coordinated_signals (
    id                 bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    coordinator_id     text             NOT NULL,
    exchange           text             NOT NULL,
    symbol             text             NOT NULL,
    decided_at         timestamptz      NOT NULL,
    direction          text             NOT NULL,
    decision           text             NOT NULL,
    confidence         double precision NOT NULL,
    source_signal_ids  bigint[]         NOT NULL,
    details            jsonb            NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT coordinated_signals_natural_key UNIQUE (coordinator_id, exchange, symbol, decided_at),
    CONSTRAINT coordinated_signals_direction CHECK (direction IN ('long', 'short', 'flat')),
    CONSTRAINT coordinated_signals_confidence CHECK (confidence >= 0 AND confidence <= 1),
    CONSTRAINT coordinated_signals_sources CHECK (cardinality(source_signal_ids) > 0)
);
