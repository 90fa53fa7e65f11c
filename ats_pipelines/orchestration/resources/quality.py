"""The ``quality`` Dagster resource: where reports go and the tolerances of the rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from ats_pipelines.quality.build import INDEX
from ats_pipelines.quality.policy import QualityPolicy


class QualityResource(dg.ConfigurableResource):
    """Quality report location (.ats/reports/quality/) and rule tolerances for asset checks."""

    reports_dir: str
    coverage_tolerance: float = 0.05
    max_spread_bps: float = 1_000.0
    cex_dex_tolerance_bps: float = 100.0
    max_heartbeat_age_s: float = 60.0
    max_bar_lag_s: float = 180.0
    rollup_window_days: int = 3  # rollup checks look at the latest days of data
    reconcile_window_days: int = 1  # reconciliation checks: the latest day of data
    report_window_days: int = 1
    trend_runs: int = 10  # runs shown per check in the report's trend
    min_class_share: float = 0.02  # labels.class_balance
    max_class_share: float = 0.96
    min_feature_row_ratio: float = 0.95  # features.rows_vs_candles
    predictions_window_hours: int = 24  # the predictions check reads rows written since

    def policy(self) -> QualityPolicy:
        return QualityPolicy(
            coverage_tolerance=self.coverage_tolerance,
            max_spread_bps=self.max_spread_bps,
            cex_dex_tolerance_bps=self.cex_dex_tolerance_bps,
            max_heartbeat_age=timedelta(seconds=self.max_heartbeat_age_s),
            max_bar_lag=timedelta(seconds=self.max_bar_lag_s),
            min_class_share=self.min_class_share,
            max_class_share=self.max_class_share,
            min_row_ratio=self.min_feature_row_ratio,
        )

    @property
    def report_dir(self) -> Path:
        return Path(self.reports_dir)

    @property
    def index_path(self) -> Path:
        return self.report_dir / INDEX
