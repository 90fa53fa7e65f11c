"""The candle suite's rules as one plain SQL query: the benchmark's baseline, and a second
implementation the tests hold the Great Expectations suite against.

It counts the rows breaking each rule (same ids) and computes each series' coverage of the
window, in the database, in one statement. It gives counts, not offending rows or Data Docs;
that is the difference the benchmark prices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ats_pipelines.lib.timeframes import parse_timeframe, timeframe_ms
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.warehouse.coverage import CONFIRM_AFTER

_RULES_SQL = """
WITH c AS (
    SELECT exchange, symbol, timeframe, ts, open, high, low, close, volume,
           (extract(epoch FROM ts) * 1000)::bigint AS ms,
           ts - lag(ts) OVER (PARTITION BY exchange, symbol, timeframe ORDER BY ts) AS step
    FROM market.candles
    WHERE exchange = $1 AND symbol = ANY($2::text[]) AND timeframe = $3
      AND ts >= $4 AND ts < $5
), bad AS (
    SELECT *,
           NOT (open > 0 AND high > 0 AND low > 0 AND close > 0
                AND greatest(open, high, low, close) <= $8::float8
                AND 'NaN' NOT IN (open, high, low, close)) AS bad_price
    FROM c
), counts AS (
    SELECT count(*) AS rows,
           count(*) FILTER (WHERE ts IS NULL) AS "ohlcv.ts_missing",
           count(*) FILTER (WHERE ms < $6::bigint) AS "ohlcv.ts_range",
           count(*) FILTER (WHERE ms > $7::bigint) AS "ohlcv.ts_future",
           count(*) FILTER (WHERE timeframe <> $3) AS "ohlcv.timeframe",
           count(*) FILTER (WHERE (ms - $10::bigint) % $9::bigint <> 0
                               OR extract(microseconds FROM ts)::bigint % 1000 <> 0)
               AS "ohlcv.ts_aligned",
           count(*) FILTER (WHERE bad_price) AS "ohlcv.price_positive",
           count(*) FILTER (WHERE NOT bad_price AND high < greatest(open, close))
               AS "ohlcv.high_bounds",
           count(*) FILTER (WHERE NOT bad_price AND low > least(open, close))
               AS "ohlcv.low_bounds",
           count(*) FILTER (WHERE NOT bad_price AND high < low) AS "ohlcv.high_low",
           count(*) FILTER (WHERE volume IS NULL OR volume < 0 OR volume = 'NaN'
                               OR volume > $8::float8) AS "ohlcv.volume",
           count(*) - count(DISTINCT (exchange, symbol, timeframe, ts))
               AS "ohlcv.duplicate_key",
           count(*) FILTER (WHERE step <= interval '0') AS "ohlcv.ts_monotonic"
    FROM bad
), bounds AS (
    SELECT ((extract(epoch FROM $4::timestamptz) * 1000)::bigint - $10::bigint + $9::bigint - 1)
               / $9::bigint * $9::bigint + $10::bigint AS first,
           (extract(epoch FROM $5::timestamptz) * 1000)::bigint AS stop
), expected AS (
    SELECT s.symbol, greatest(0, (b.stop - b.first + $9::bigint - 1) / $9::bigint) AS expected
    FROM unnest($2::text[]) AS s(symbol) CROSS JOIN bounds b
), present AS (
    SELECT symbol, count(DISTINCT ts) AS n FROM c
    WHERE (ms - $10::bigint) % $9::bigint = 0 GROUP BY symbol
), empty AS (
    SELECT e.symbol, count(*) AS n FROM market.empty_intervals e
    WHERE e.exchange = $1 AND e.symbol = ANY($2::text[]) AND e.timeframe = $3
      AND e.ts >= $4 AND e.ts < $5 AND e.asks >= $11::int
      AND NOT EXISTS (SELECT 1 FROM c WHERE c.symbol = e.symbol AND c.ts = e.ts)
    GROUP BY e.symbol
), coverage AS (
    SELECT x.symbol, CASE WHEN x.expected = 0 THEN 1.0
                          ELSE (coalesce(p.n, 0) + coalesce(m.n, 0))::float8 / x.expected END
               AS coverage
    FROM expected x LEFT JOIN present p USING (symbol) LEFT JOIN empty m USING (symbol)
)
SELECT to_jsonb(counts) AS counts,
       (SELECT jsonb_object_agg(symbol, coverage) FROM coverage) AS coverage
FROM counts
"""


@dataclass(frozen=True)
class SqlRuleCounts:
    rows: int
    violations: dict[str, int]  # rule id -> rows breaking it
    coverage: dict[str, float]  # symbol -> coverage of the window
    coverage_tolerance: float

    @property
    def failed_rules(self) -> list[str]:
        rules = [r for r, n in self.violations.items() if n]
        if any(c < 1 - self.coverage_tolerance for c in self.coverage.values()):
            rules.append("ohlcv.coverage")
        return sorted(rules)


async def candle_rule_counts(
    conn: asyncpg.Connection,
    *,
    exchange: str,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    now: datetime,
    policy: QualityPolicy,
) -> SqlRuleCounts:
    tf = parse_timeframe(timeframe)
    row = await conn.fetchrow(
        _RULES_SQL,
        exchange,
        list(symbols),
        timeframe,
        start,
        end,
        policy.earliest_ms,
        policy.latest_ms(now),
        policy.max_price,
        timeframe_ms(tf),
        tf.offset_ms,
        CONFIRM_AFTER,
    )
    assert row is not None
    counts = json.loads(row["counts"])
    rows = int(counts.pop("rows"))
    return SqlRuleCounts(
        rows,
        {k: int(v) for k, v in counts.items()},
        {k: float(v) for k, v in json.loads(row["coverage"] or "{}").items()},
        policy.coverage_tolerance,
    )
