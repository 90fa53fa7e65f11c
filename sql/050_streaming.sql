-- The streaming service's saved state: per (exchange, symbol) the aggregator's open bars (exact
-- sums as parts, seen trade ids above a floor), the trade-id tracker and tainted intervals, so
-- a restart resumes mid-bar without losing or repeating a trade. Written in the same
-- transaction as the bars it covers; shard names the process that wrote it last.
CREATE TABLE IF NOT EXISTS ops.stream_state (
    exchange       text COLLATE "C" NOT NULL,
    symbol         text COLLATE "C" NOT NULL,
    shard          text        NOT NULL,
    state          jsonb       NOT NULL,
    closed_before  timestamptz,
    saved_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol)
);
