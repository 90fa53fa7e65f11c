-- Market-data ingestion, gap repair and the incremental rollup (every edition).

-- An empty answer is only believed once the exchange has given it twice (see
-- ats_pipelines/market_data/coverage.py): asks counts the empty answers, last_asked_at the latest.
ALTER TABLE market.empty_intervals
    ADD COLUMN IF NOT EXISTS asks          integer     NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS last_asked_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE market.empty_intervals
    ADD CONSTRAINT empty_intervals_asks_positive CHECK (asks > 0);

-- open_from: the earliest bucket the rollup saw touched before its interval was over; the next
-- run finishes it even when no new minute arrives for it.
ALTER TABLE market.rollup_watermarks
    ADD COLUMN IF NOT EXISTS open_from timestamptz;

-- The incremental rollup recomputes buckets whose minutes changed after its watermark. Inserts
-- carry ingested_at = now(); an update that changes a bar's values must move it too, whoever
-- writes (REST correcting the stream, a migration re-run), or the rollup would never see it.
CREATE OR REPLACE FUNCTION market.candles_touch_ingested_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.open, NEW.high, NEW.low, NEW.close, NEW.volume, NEW.quote_volume, NEW.trade_count,
        NEW.vwap, NEW.taker_buy_volume)
       IS DISTINCT FROM
       (OLD.open, OLD.high, OLD.low, OLD.close, OLD.volume, OLD.quote_volume, OLD.trade_count,
        OLD.vwap, OLD.taker_buy_volume) THEN
        NEW.ingested_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER candles_touch_ingested_at BEFORE UPDATE ON market.candles
    FOR EACH ROW EXECUTE FUNCTION market.candles_touch_ingested_at();

-- "Which minutes changed since the watermark" without reading a symbol's whole history.
CREATE INDEX IF NOT EXISTS candles_1m_ingested_idx ON market.candles (exchange, symbol, ingested_at)
    WHERE timeframe = '1m';
