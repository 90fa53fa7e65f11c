-- Signals: replays of the analyzers and the coordinator over stored bars (backtests), kept next
-- to the live tables so the two compare row by row, and the coordinator's latest decision per
-- symbol.

-- One replay: its range and whether its output equalled the live rows of that range.
CREATE TABLE signals.replays (
    replay_id       text        PRIMARY KEY,
    analyzer_id     text        NOT NULL,
    coordinator_id  text        NOT NULL,
    exchange        text        NOT NULL,
    symbols         text[]      NOT NULL,
    timeframes      text[]      NOT NULL,
    range_start     timestamptz NOT NULL,
    range_end       timestamptz NOT NULL,
    detected        integer     NOT NULL,
    coordinated     integer     NOT NULL,
    matches_live    boolean     NOT NULL,
    differences     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replays_range CHECK (range_start < range_end)
);

-- Same columns and natural key as signals.detected_signals, per replay (no ids: ids are the
-- live path's order of arrival, not part of a signal).
CREATE TABLE signals.replay_detected_signals (
    replay_id    text             NOT NULL REFERENCES signals.replays (replay_id) ON DELETE CASCADE,
    analyzer_id  text             NOT NULL,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    ts           timestamptz      NOT NULL,
    signal_type  text             NOT NULL,
    price        double precision NOT NULL,
    details      jsonb            NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (replay_id, analyzer_id, exchange, symbol, timeframe, ts, signal_type)
);

CREATE TABLE signals.replay_coordinated_signals (
    replay_id       text             NOT NULL REFERENCES signals.replays (replay_id) ON DELETE CASCADE,
    coordinator_id  text             NOT NULL,
    exchange        text             NOT NULL,
    symbol          text             NOT NULL,
    decided_at      timestamptz      NOT NULL,
    direction       text             NOT NULL,
    decision        text             NOT NULL,
    confidence      double precision NOT NULL,
    details         jsonb            NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (replay_id, coordinator_id, exchange, symbol, decided_at)
);

-- The decision a trader acts on: the latest per coordinator and symbol.
CREATE VIEW signals.latest_coordinated_signals AS
SELECT DISTINCT ON (coordinator_id, exchange, symbol)
       id, coordinator_id, exchange, symbol, decided_at, direction, decision, confidence,
       source_signal_ids, details, created_at
FROM signals.coordinated_signals
ORDER BY coordinator_id, exchange, symbol, decided_at DESC;
