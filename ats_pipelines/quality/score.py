"""The data-quality score per source and symbol (the seed's: completeness, freshness, validity).

For the 1-minute candles of one (exchange, symbol, source) over a window:

* completeness — the share of the minutes in the source's span (its first to its last bar in
  the window) that have a bar or were confirmed empty: the source's own holes;
* freshness — 1 while the newest bar closed within ``max_bar_lag`` of now, falling linearly to
  0 at ``freshness_horizon``; archival sources (the legacy cache) do not grow and score 1;
* validity — rows the ingestion validator accepts today, over those rows plus the ones it
  quarantined from this source in the window.

``score`` is their weighted mean (``QualityPolicy.score_weights``), each part in [0, 1].
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from ats_pipelines.lib.validation import DataValidator
from ats_pipelines.quality.policy import QualityPolicy

ARCHIVAL_SOURCES = frozenset({"legacy_cache"})
MINUTE_MS = 60_000
KEYS = ["exchange", "symbol", "source"]
SCORE_COLUMNS = (
    "dataset",
    "exchange",
    "source",
    "symbol",
    "window_start",
    "window_end",
    "rows",
    "completeness",
    "freshness",
    "validity",
    "score",
)


def _freshness(age_s: float | None, policy: QualityPolicy) -> float:
    if age_s is None:
        return 0.0
    lo, hi = policy.max_bar_lag.total_seconds(), policy.freshness_horizon.total_seconds()
    if age_s <= lo:
        return 1.0
    return max(0.0, 1.0 - (age_s - lo) / max(hi - lo, 1.0))


def candle_scores(
    candles: pl.DataFrame,
    confirmed_empty: pl.DataFrame,
    quarantined: pl.DataFrame,
    *,
    window: tuple[datetime, datetime],
    now: datetime,
    policy: QualityPolicy,
) -> pl.DataFrame:
    """Scores of 1m candles (``exchange, symbol, ts, OHLCV, source``) in ``window``.

    ``confirmed_empty``: exchange, symbol, ts; ``quarantined``: exchange, symbol, source, rows.
    """
    if candles.is_empty():
        return pl.DataFrame(schema={c: pl.Float64 for c in SCORE_COLUMNS})
    checked = DataValidator(now=lambda: now).candles(candles, timeframe="1m")
    rejected_rows = checked.rejected["row"].unique()
    frame = candles.with_row_index("_row").with_columns(
        pl.col("_row").is_in(rejected_rows.implode()).not_().alias("_valid"),
        (pl.col("ts").dt.epoch("ms")).alias("_ms"),
    )
    per = frame.group_by(KEYS).agg(
        pl.len().alias("rows"),
        pl.col("_valid").sum().alias("valid"),
        pl.col("_ms").filter(pl.col("_ms") % MINUTE_MS == 0).n_unique().alias("minutes"),
        pl.col("_ms").min().alias("first"),
        pl.col("_ms").max().alias("last"),
    )
    empty = confirmed_empty.select("exchange", "symbol", pl.col("ts").dt.epoch("ms").alias("_ms"))
    spans = (
        per.join(empty, on=["exchange", "symbol"], how="left")
        .filter(pl.col("_ms").is_between(pl.col("first"), pl.col("last")))
        .group_by(KEYS)
        .agg(pl.len().alias("empty"))
    )
    per = (
        per.join(spans, on=KEYS, how="left")
        .join(quarantined.select(*KEYS, pl.col("rows").alias("quarantined")), on=KEYS, how="left")
        .with_columns(pl.col("empty", "quarantined").fill_null(0))
    )
    now_ms = now.timestamp() * 1000
    out = []
    for r in per.sort(KEYS).iter_rows(named=True):
        expected = (r["last"] - r["first"]) // MINUTE_MS + 1
        completeness = min(1.0, (r["minutes"] + r["empty"]) / expected)
        age = (now_ms - (r["last"] + MINUTE_MS)) / 1000
        freshness = 1.0 if r["source"] in ARCHIVAL_SOURCES else _freshness(age, policy)
        validity = r["valid"] / (r["rows"] + r["quarantined"])
        wc, wf, wv = policy.score_weights
        score = (wc * completeness + wf * freshness + wv * validity) / (wc + wf + wv)
        out.append(
            {
                "dataset": "candles_1m",
                "exchange": r["exchange"],
                "source": r["source"],
                "symbol": r["symbol"],
                "window_start": window[0],
                "window_end": window[1],
                "rows": r["rows"],
                "completeness": completeness,
                "freshness": freshness,
                "validity": validity,
                "score": min(1.0, max(0.0, score)),
                "details": {
                    "expected_minutes": expected,
                    "confirmed_empty": r["empty"],
                    "invalid_rows": r["rows"] - r["valid"],
                    "quarantined": r["quarantined"],
                    "age_s": round(age, 1),
                },
            }
        )
    return pl.DataFrame(out)


def window_of(end: datetime, days: int) -> tuple[datetime, datetime]:
    return end - timedelta(days=days), end
