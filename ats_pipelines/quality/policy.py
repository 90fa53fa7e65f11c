"""The tolerances of the quality rules, in one place (the ``quality`` resource fills them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class QualityPolicy:
    """Thresholds; every field is a rule's knob, named after the rule it tunes."""

    coverage_tolerance: float = 0.05  # ohlcv.coverage: at most 5 % of a window's bars missing
    future_tolerance: timedelta = timedelta(seconds=5)  # *.ts_future, as the validator
    earliest: datetime = datetime(2009, 1, 3, tzinfo=UTC)  # *.ts_range, as the validator
    max_price: float = 1e12  # prices above this are corrupt (also catches infinity)
    max_spread_bps: float = 1_000.0  # book.spread_range: a 10 % spread is not a market
    cost_rel_tolerance: float = 1e-6  # trade.cost
    # features
    warmup_rows: int = 0
    feature_ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    min_row_ratio: float = 0.95  # features.rows_vs_candles
    max_row_ratio: float = 1.0
    # labels
    min_class_share: float = 0.02  # labels.class_balance
    max_class_share: float = 0.96
    label_horizon_rows: int = 0
    # predictions
    probas_tolerance: float = 1e-6  # signals.probas_sum / proba_is_pred
    # reconciliation
    price_rel_tolerance: float = 1e-9  # stream/history vs REST: same trades, same prices
    volume_rel_tolerance: float = 1e-6  # volume sums in another order differ by rounding
    cex_dex_tolerance_bps: float = 100.0  # reconcile.cex_dex
    # freshness (stream)
    max_heartbeat_age: timedelta = timedelta(seconds=60)
    max_bar_lag: timedelta = timedelta(minutes=3)
    # quality score weights (completeness, freshness, validity)
    score_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    freshness_horizon: timedelta = timedelta(hours=1)  # freshness score reaches 0 at this age

    def latest_ms(self, now: datetime) -> int:
        return int((now + self.future_tolerance).timestamp() * 1000)

    @property
    def earliest_ms(self) -> int:
        return int(self.earliest.timestamp() * 1000)
