-- Market data. Key text columns use the "C" collation: identifiers compare as bytes, which
-- keeps index maintenance cheap (measured ~10 % faster COPY than a linguistic collation).
-- Timestamps are timestamptz in UTC; a bar's ts is its OPEN time, aligned to its
-- timeframe. Symbols are ccxt unified ('BTC/USDT', 'XRP/USDT:USDT'), exchanges ccxt ids.

-- Trade-price candles of every timeframe (1m from exchanges and the stream, higher ones rolled up).
CREATE TABLE market.candles (
    exchange          text COLLATE "C"             NOT NULL,
    symbol            text COLLATE "C"             NOT NULL,
    timeframe         text COLLATE "C"             NOT NULL,
    ts                timestamptz      NOT NULL,
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            double precision NOT NULL,
    quote_volume      double precision,
    trade_count       bigint,
    vwap              double precision,
    taker_buy_volume  double precision,
    source            text             NOT NULL,
    batch_id          bigint,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, ts),
    CONSTRAINT candles_timeframe_format CHECK (timeframe ~ '^[1-9][0-9]*[smhdwM]$'),
    CONSTRAINT candles_prices_positive CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0),
    CONSTRAINT candles_high_low CHECK (high >= low),
    CONSTRAINT candles_high_bounds CHECK (high >= open AND high >= close),
    CONSTRAINT candles_low_bounds CHECK (low <= open AND low <= close),
    CONSTRAINT candles_volume_nonnegative CHECK (volume >= 0),
    CONSTRAINT candles_trade_count_nonnegative CHECK (trade_count IS NULL OR trade_count >= 0),
    CONSTRAINT candles_taker_buy_within_volume
        CHECK (taker_buy_volume IS NULL OR (taker_buy_volume >= 0 AND taker_buy_volume <= volume * 1.000001)),
    CONSTRAINT candles_source_named CHECK (source <> '')
);
CREATE INDEX candles_batch_idx ON market.candles (batch_id) WHERE batch_id IS NOT NULL;

-- Mark, index and premium-index candles of derivatives (volume is often absent).
CREATE TABLE market.reference_candles (
    exchange    text COLLATE "C"             NOT NULL,
    symbol      text COLLATE "C"             NOT NULL,
    timeframe   text COLLATE "C"             NOT NULL,
    price_type  text COLLATE "C"             NOT NULL,
    ts          timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision,
    source      text             NOT NULL,
    batch_id    bigint,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, price_type, ts),
    CONSTRAINT reference_candles_price_type CHECK (price_type IN ('mark', 'index', 'premium_index')),
    CONSTRAINT reference_candles_timeframe_format CHECK (timeframe ~ '^[1-9][0-9]*[smhdwM]$'),
    CONSTRAINT reference_candles_high_low CHECK (high >= low)
);
CREATE INDEX reference_candles_batch_idx ON market.reference_candles (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE market.funding_rates (
    exchange    text COLLATE "C"             NOT NULL,
    symbol      text COLLATE "C"             NOT NULL,
    ts          timestamptz      NOT NULL,
    rate        double precision NOT NULL,
    mark_price  double precision,
    source      text             NOT NULL,
    batch_id    bigint,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, ts),
    CONSTRAINT funding_rates_rate_sane CHECK (rate > -1 AND rate < 1)
);

-- Public trades. trade_id is the exchange's id (text: DEX ids are transaction hashes).
CREATE TABLE market.trades (
    exchange    text COLLATE "C"             NOT NULL,
    symbol      text COLLATE "C"             NOT NULL,
    ts          timestamptz      NOT NULL,
    trade_id    text COLLATE "C"             NOT NULL,
    price       double precision NOT NULL,
    amount      double precision NOT NULL,
    cost        double precision,
    side        text,
    source      text             NOT NULL,
    batch_id    bigint,
    received_at timestamptz,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, ts, trade_id),
    CONSTRAINT trades_price_positive CHECK (price > 0),
    CONSTRAINT trades_amount_positive CHECK (amount > 0),
    CONSTRAINT trades_side CHECK (side IS NULL OR side IN ('buy', 'sell')),
    CONSTRAINT trades_trade_id_named CHECK (trade_id <> '')
);
CREATE INDEX trades_batch_idx ON market.trades (batch_id) WHERE batch_id IS NOT NULL;

-- L2 order-book snapshots: top-N levels as arrays (best first) plus derived metrics.
-- imbalance_N = (bid size - ask size) / (bid size + ask size) over the best N levels;
-- *_depth_5pct = base-currency size within 5 % of mid on each side.
CREATE TABLE market.order_book_snapshots (
    exchange        text COLLATE "C"               NOT NULL,
    symbol          text COLLATE "C"               NOT NULL,
    ts              timestamptz        NOT NULL,
    bid_prices      double precision[] NOT NULL,
    bid_sizes       double precision[] NOT NULL,
    ask_prices      double precision[] NOT NULL,
    ask_sizes       double precision[] NOT NULL,
    sequence        bigint,
    mid             double precision,
    spread          double precision,
    spread_bps      double precision,
    imbalance_1     double precision,
    imbalance_5     double precision,
    imbalance_10    double precision,
    bid_depth_5pct  double precision,
    ask_depth_5pct  double precision,
    source          text               NOT NULL,
    batch_id        bigint,
    ingested_at     timestamptz        NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, ts),
    CONSTRAINT obs_bid_arrays_match CHECK (cardinality(bid_prices) = cardinality(bid_sizes)),
    CONSTRAINT obs_ask_arrays_match CHECK (cardinality(ask_prices) = cardinality(ask_sizes)),
    CONSTRAINT obs_uncrossed
        CHECK (cardinality(bid_prices) = 0 OR cardinality(ask_prices) = 0 OR bid_prices[1] < ask_prices[1]),
    CONSTRAINT obs_spread_nonnegative CHECK (spread IS NULL OR spread >= 0),
    CONSTRAINT obs_imbalance_range CHECK (
        (imbalance_1 IS NULL OR imbalance_1 BETWEEN -1 AND 1)
        AND (imbalance_5 IS NULL OR imbalance_5 BETWEEN -1 AND 1)
        AND (imbalance_10 IS NULL OR imbalance_10 BETWEEN -1 AND 1))
);

-- Order-book aggregates (the seed's order_book_1s_agg and its 1-minute sibling).
CREATE TABLE market.order_book_1s_agg (
    exchange           text COLLATE "C"             NOT NULL,
    symbol             text COLLATE "C"             NOT NULL,
    ts                 timestamptz      NOT NULL,
    snapshots          integer          NOT NULL,
    mid_open           double precision NOT NULL,
    mid_high           double precision NOT NULL,
    mid_low            double precision NOT NULL,
    mid_close          double precision NOT NULL,
    spread_mean        double precision,
    spread_max         double precision,
    spread_bps_mean    double precision,
    imbalance_1_mean   double precision,
    imbalance_5_mean   double precision,
    imbalance_10_mean  double precision,
    bid_depth_5pct_mean double precision,
    ask_depth_5pct_mean double precision,
    computed_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, ts),
    CONSTRAINT ob1s_snapshots_positive CHECK (snapshots > 0),
    CONSTRAINT ob1s_mid_bounds CHECK (mid_high >= mid_low)
);
CREATE TABLE market.order_book_1m_agg (LIKE market.order_book_1s_agg INCLUDING ALL);

-- Per-minute taker flow from trades.
CREATE TABLE market.trade_flow_1m (
    exchange     text COLLATE "C"             NOT NULL,
    symbol       text COLLATE "C"             NOT NULL,
    ts           timestamptz      NOT NULL,
    buy_volume   double precision NOT NULL,
    sell_volume  double precision NOT NULL,
    buy_count    integer          NOT NULL,
    sell_count   integer          NOT NULL,
    vwap         double precision,
    computed_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, ts),
    CONSTRAINT trade_flow_nonnegative
        CHECK (buy_volume >= 0 AND sell_volume >= 0 AND buy_count >= 0 AND sell_count >= 0)
);

-- What was asked of an exchange's REST API, so a minute the exchange has no candle for
-- ("it returned nothing") is told apart from a minute we never asked for.
CREATE TABLE market.fetch_log (
    exchange      text COLLATE "C"        NOT NULL,
    symbol        text COLLATE "C"        NOT NULL,
    timeframe     text COLLATE "C"        NOT NULL,
    range_start   timestamptz NOT NULL,
    range_end     timestamptz NOT NULL,
    rows_returned integer     NOT NULL,
    fetched_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, range_start, range_end),
    CONSTRAINT fetch_log_range CHECK (range_end > range_start),
    CONSTRAINT fetch_log_rows CHECK (rows_returned >= 0)
);

-- Buckets the exchange confirmed empty (asked, nothing returned): not gaps to re-fetch forever.
CREATE TABLE market.empty_intervals (
    exchange     text COLLATE "C"        NOT NULL,
    symbol       text COLLATE "C"        NOT NULL,
    timeframe    text COLLATE "C"        NOT NULL,
    ts           timestamptz NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, ts)
);

-- How far the incremental rollup (the fallback for continuous aggregates) has got.
CREATE TABLE market.rollup_watermarks (
    exchange    text COLLATE "C"        NOT NULL,
    symbol      text COLLATE "C"        NOT NULL,
    timeframe   text COLLATE "C"        NOT NULL,
    watermark   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe)
);
