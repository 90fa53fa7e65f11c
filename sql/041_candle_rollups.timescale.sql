-- requires: timescale
-- fallback: the candle_rollups asset computes 5m..1d bars incrementally into market.candles
--   (timeframe 5m..1d, source 'rollup'), recomputing only buckets touched since its watermark.
-- Hierarchical continuous aggregates of 1-minute candles: each level from the one below, so a
-- 1d bar is built from six 4h bars like the fallback builds it. The select lists are those of
-- ats_pipelines/market_data/rollup_sql.py (a test runs both and compares the bars). Only
-- materialised buckets are read (materialized_only): the candle_rollups asset refreshes them up
-- to the last bucket whose interval is over, so a bar appears only once it is final. No refresh
-- policy: Dagster owns the timing (DESIGN.md).

CREATE MATERIALIZED VIEW market.candles_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT exchange, symbol, time_bucket(INTERVAL '5 minutes', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume::numeric)::double precision AS volume,
       CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume::numeric)::double precision END AS quote_volume,
       CASE WHEN count(trade_count) = count(*) THEN sum(trade_count)::bigint END AS trade_count,
       CASE WHEN count(quote_volume) = count(*) THEN CASE WHEN sum(volume) > 0 THEN least(greatest(sum(quote_volume::numeric)::double precision / sum(volume::numeric)::double precision, min(low)), max(high)) ELSE last(close, ts) END END AS vwap,
       CASE WHEN count(taker_buy_volume) = count(*) THEN sum(taker_buy_volume::numeric)::double precision END AS taker_buy_volume
FROM market.candles
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '5 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.candles_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT exchange, symbol, time_bucket(INTERVAL '15 minutes', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume::numeric)::double precision AS volume,
       CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume::numeric)::double precision END AS quote_volume,
       CASE WHEN count(trade_count) = count(*) THEN sum(trade_count)::bigint END AS trade_count,
       CASE WHEN count(quote_volume) = count(*) THEN CASE WHEN sum(volume) > 0 THEN least(greatest(sum(quote_volume::numeric)::double precision / sum(volume::numeric)::double precision, min(low)), max(high)) ELSE last(close, ts) END END AS vwap,
       CASE WHEN count(taker_buy_volume) = count(*) THEN sum(taker_buy_volume::numeric)::double precision END AS taker_buy_volume
FROM market.candles_5m
GROUP BY exchange, symbol, time_bucket(INTERVAL '15 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.candles_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT exchange, symbol, time_bucket(INTERVAL '1 hours', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume::numeric)::double precision AS volume,
       CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume::numeric)::double precision END AS quote_volume,
       CASE WHEN count(trade_count) = count(*) THEN sum(trade_count)::bigint END AS trade_count,
       CASE WHEN count(quote_volume) = count(*) THEN CASE WHEN sum(volume) > 0 THEN least(greatest(sum(quote_volume::numeric)::double precision / sum(volume::numeric)::double precision, min(low)), max(high)) ELSE last(close, ts) END END AS vwap,
       CASE WHEN count(taker_buy_volume) = count(*) THEN sum(taker_buy_volume::numeric)::double precision END AS taker_buy_volume
FROM market.candles_15m
GROUP BY exchange, symbol, time_bucket(INTERVAL '1 hours', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.candles_4h
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT exchange, symbol, time_bucket(INTERVAL '4 hours', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume::numeric)::double precision AS volume,
       CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume::numeric)::double precision END AS quote_volume,
       CASE WHEN count(trade_count) = count(*) THEN sum(trade_count)::bigint END AS trade_count,
       CASE WHEN count(quote_volume) = count(*) THEN CASE WHEN sum(volume) > 0 THEN least(greatest(sum(quote_volume::numeric)::double precision / sum(volume::numeric)::double precision, min(low)), max(high)) ELSE last(close, ts) END END AS vwap,
       CASE WHEN count(taker_buy_volume) = count(*) THEN sum(taker_buy_volume::numeric)::double precision END AS taker_buy_volume
FROM market.candles_1h
GROUP BY exchange, symbol, time_bucket(INTERVAL '4 hours', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.candles_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT exchange, symbol, time_bucket(INTERVAL '1 days', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume::numeric)::double precision AS volume,
       CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume::numeric)::double precision END AS quote_volume,
       CASE WHEN count(trade_count) = count(*) THEN sum(trade_count)::bigint END AS trade_count,
       CASE WHEN count(quote_volume) = count(*) THEN CASE WHEN sum(volume) > 0 THEN least(greatest(sum(quote_volume::numeric)::double precision / sum(volume::numeric)::double precision, min(low)), max(high)) ELSE last(close, ts) END END AS vwap,
       CASE WHEN count(taker_buy_volume) = count(*) THEN sum(taker_buy_volume::numeric)::double precision END AS taker_buy_volume
FROM market.candles_4h
GROUP BY exchange, symbol, time_bucket(INTERVAL '1 days', ts)
WITH NO DATA;
