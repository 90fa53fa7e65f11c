-- requires: timescale
-- fallback: no native compression (rows stay uncompressed); retention is applied by the Dagster
--           retention schedule with drop_chunks, which the Apache edition has.
-- Compression of cold chunks and retention of the bulky high-frequency tables. TimescaleDB's job
-- scheduler runs these; nothing depends on them for correctness (see DESIGN.md).
ALTER TABLE market.candles SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol, timeframe', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('market.candles', INTERVAL '30 days', if_not_exists => true);
ALTER TABLE market.trades SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol', timescaledb.compress_orderby = 'ts, trade_id');
SELECT add_compression_policy('market.trades', INTERVAL '7 days', if_not_exists => true);
ALTER TABLE market.order_book_snapshots SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol', timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('market.order_book_snapshots', INTERVAL '2 days', if_not_exists => true);
SELECT add_retention_policy('market.order_book_snapshots', INTERVAL '30 days', if_not_exists => true);
SELECT add_retention_policy('market.order_book_1s_agg', INTERVAL '90 days', if_not_exists => true);
