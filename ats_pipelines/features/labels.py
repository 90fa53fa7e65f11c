"""Labels: forward-return classes and triple-barrier outcomes, kept apart from the features.

Labels look forward in time, so they never enter a feature table or a Feast feature view:
they are their own lake dataset (``labels/<name>``), and a training set joins them to features
by decision time (``event_timestamp``, the close of the decision bar) — the labels are the
entity rows, Feast adds the features as of that time (see :mod:`ats_pipelines.features.training`).

* ``label``: BUY when the log return over the next ``horizon`` bars exceeds ``threshold``,
  SELL when it is below ``-threshold``, HOLD otherwise.
* triple barrier (``tb_*``): enter long at the decision bar's close; the first of take-profit
  (``high >= entry * (1 + take_profit)``), stop-loss (``low <= entry * (1 - stop_loss)``) or the
  time limit (``horizon`` bars, exit at that bar's close) ends the trade. A bar touching both
  barriers counts as stop-loss (its path inside the bar is unknown; the cautious reading).
  ``tb_label`` is BUY / SELL / HOLD for take-profit / stop-loss / time limit, and
  ``tb_reward_risk`` the realised return in units of the risk taken (``return / stop_loss``).

A row whose horizon is not yet fully in the data gets no label (it appears once it is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ats_pipelines.features.catalog import TIMESTAMP
from ats_pipelines.lib.timeframes import to_timedelta

BUY, SELL, HOLD = "BUY", "SELL", "HOLD"
TAKE_PROFIT, STOP_LOSS, TIME_LIMIT = "take_profit", "stop_loss", "time_limit"


@dataclass(frozen=True)
class LabelSpec:
    """How one label set is made; its ``name`` is its lake dataset (``labels/<name>``)."""

    name: str = "labels_1m"
    timeframe: str = "1m"
    horizon: int = 15  # bars: forward-return horizon and triple-barrier time limit
    threshold: float = 0.002  # log return beyond which the forward class is BUY/SELL
    take_profit: float = 0.004  # fraction above the entry price
    stop_loss: float = 0.002  # fraction below the entry price

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(
                f"label spec {self.name}: horizon must be >= 1 bar, got {self.horizon}"
            )
        for field_name in ("threshold", "take_profit", "stop_loss"):
            if not getattr(self, field_name) > 0:
                raise ValueError(f"label spec {self.name}: {field_name} must be > 0")
        to_timedelta(self.timeframe)  # validates

    @property
    def dataset(self) -> str:
        return f"labels/{self.name}"

    def describe(self) -> dict[str, str | int | float]:
        return asdict(self)


LABEL_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("event_timestamp", TIMESTAMP, nullable=False),  # decision time: the bar's close
        pa.field("label_timestamp", TIMESTAMP, nullable=False),  # when the outcome is known
        pa.field("forward_return", pa.float64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("tb_label", pa.string(), nullable=False),
        pa.field("tb_exit", pa.string(), nullable=False),
        pa.field("tb_bars", pa.int64(), nullable=False),
        pa.field("tb_return", pa.float64(), nullable=False),
        pa.field("tb_reward_risk", pa.float64(), nullable=False),
    ]
)


def series_labels(bars: pl.DataFrame, spec: LabelSpec) -> pl.DataFrame:
    """Labels of one series' bars (sorted by ``ts``); rows without a full horizon are dropped."""
    n, h = bars.height, spec.horizon
    labelled = max(n - h, 0)
    close = bars["close"].to_numpy()
    high, low = bars["high"].to_numpy(), bars["low"].to_numpy()
    entry = close[:labelled]
    upper, lower = entry * (1 + spec.take_profit), entry * (1 - spec.stop_loss)
    exit_bar = np.full(labelled, h, dtype=np.int64)
    reason = np.full(labelled, 2, dtype=np.int8)  # 0 take-profit, 1 stop-loss, 2 time limit
    open_ = np.ones(labelled, dtype=bool)
    for k in range(1, h + 1):
        stop = open_ & (low[k : k + labelled] <= lower)
        take = open_ & ~stop & (high[k : k + labelled] >= upper)
        exit_bar[stop | take] = k
        reason[stop], reason[take] = 1, 0
        open_ &= ~(stop | take)
    rows = np.arange(labelled)
    final = close[rows + h] if labelled else close[:0]
    exit_price = np.where(reason == 0, upper, np.where(reason == 1, lower, final))
    tb_return = exit_price / entry - 1 if labelled else entry
    forward = np.log(final / entry) if labelled else entry
    bar = to_timedelta(spec.timeframe)
    ts = bars["ts"]
    return pl.DataFrame(
        {
            "exchange": bars["exchange"][:labelled],
            "symbol": bars["symbol"][:labelled],
            "ts": ts[:labelled],
            "event_timestamp": ts[:labelled] + bar,
            "label_timestamp": ts.gather(rows + exit_bar) + bar if labelled else ts[:0],
            "forward_return": forward,
            "label": np.where(
                forward > spec.threshold, BUY, np.where(forward < -spec.threshold, SELL, HOLD)
            ),
            "tb_label": np.array([BUY, SELL, HOLD])[reason],
            "tb_exit": np.array([TAKE_PROFIT, STOP_LOSS, TIME_LIMIT])[reason],
            "tb_bars": exit_bar,
            "tb_return": tb_return,
            "tb_reward_risk": tb_return / spec.stop_loss,
        },
        schema_overrides={"label": pl.String, "tb_label": pl.String, "tb_exit": pl.String},
    )
