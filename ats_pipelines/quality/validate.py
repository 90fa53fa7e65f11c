"""One call per dataset: prepare the frame, build its suites, validate, return the outcome.

Frames are in the platform's row shape (the columns of the ``market.*`` / ``signals.*``
tables); ``now`` is the clock for the future-timestamp rule (tests pass a fixed one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from ats_pipelines.quality import suites
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.prepare import (
    prepare_bucketed,
    prepare_candles,
    prepare_order_books,
    prepare_trades,
)
from ats_pipelines.quality.prepare_ml import (
    entity_keys,
    prepare_features,
    prepare_labels,
    prepare_signals,
)
from ats_pipelines.quality.runner import SuiteOutcome, run_suites

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )

DEFAULT_POLICY = QualityPolicy()


def _params(policy: QualityPolicy, now: datetime | None) -> dict[str, int]:
    return {
        "earliest_ms": policy.earliest_ms,
        "latest_ms": policy.latest_ms(now or datetime.now(UTC)),
    }


def check_candles(
    frame: pl.DataFrame,
    *,
    timeframe: str,
    policy: QualityPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    confirmed_empty: pl.DataFrame | None = None,
    series: Iterable[tuple[str, str]] = (),
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_candles(
        frame,
        timeframe=timeframe,
        exchange=exchange,
        symbol=symbol,
        window=window,
        confirmed_empty=confirmed_empty,
        series=series,
    )
    return run_suites(
        prepared,
        suites.candle_suites(timeframe, policy),
        name=f"candles_{timeframe}",
        parameters=_params(policy, now),
        context=context,
    )


def check_trades(
    frame: pl.DataFrame,
    *,
    policy: QualityPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_trades(frame, exchange=exchange, symbol=symbol)
    built = suites.trade_suites(policy, with_cost="cost" in frame.columns)
    return run_suites(
        prepared, built, name="trades", parameters=_params(policy, now), context=context
    )


def check_order_books(
    frame: pl.DataFrame,
    *,
    policy: QualityPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_order_books(frame, exchange=exchange, symbol=symbol)
    return run_suites(
        prepared,
        suites.order_book_suites(policy),
        name="order_book_snapshots",
        parameters=_params(policy, now),
        context=context,
    )


def check_order_book_aggregates(
    frame: pl.DataFrame,
    *,
    timeframe: str,
    policy: QualityPolicy = DEFAULT_POLICY,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_bucketed(frame, timeframe=timeframe, what=f"order_book_{timeframe}_agg")
    return run_suites(
        prepared,
        suites.order_book_agg_suites(timeframe, policy),
        name=f"order_book_{timeframe}_agg",
        context=context,
    )


def check_trade_flow(
    frame: pl.DataFrame,
    *,
    policy: QualityPolicy = DEFAULT_POLICY,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_bucketed(frame, timeframe="1m", what="trade_flow_1m")
    return run_suites(
        prepared, suites.trade_flow_suites(policy), name="trade_flow_1m", context=context
    )


def check_features(
    frame: pl.DataFrame,
    *,
    columns: Sequence[str],
    policy: QualityPolicy = DEFAULT_POLICY,
    candle_rows: Mapping[str, int] | None = None,
    required: Sequence[str] | None = None,
    warmup_rows: Mapping[str, int] | None = None,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    """``columns``: the feature columns (keys and timestamps are not features); ``required``:
    those that must not be null after the warm-up (default: all); ``warmup_rows``: leading
    rows per symbol exempt (default: ``policy.warmup_rows`` for every symbol)."""
    prepared = prepare_features(
        frame,
        warmup_rows=policy.warmup_rows if warmup_rows is None else warmup_rows,
        candle_rows=candle_rows,
    )
    built = suites.feature_suites(
        columns,
        policy,
        keys=entity_keys(frame),
        with_candles=candle_rows is not None,
        required=required,
    )
    return run_suites(prepared, built, name="features", context=context)


def check_labels(
    frame: pl.DataFrame,
    *,
    policy: QualityPolicy = DEFAULT_POLICY,
    label_cols: Sequence[str] = ("label",),
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_labels(frame, label_cols=label_cols, horizon_rows=policy.label_horizon_rows)
    return run_suites(
        prepared, suites.label_suites(policy, label_cols=label_cols), name="labels", context=context
    )


def check_signals(
    frame: pl.DataFrame,
    *,
    policy: QualityPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
    context: AbstractDataContext | None = None,
) -> SuiteOutcome:
    prepared = prepare_signals(frame)
    built = suites.signal_suites(policy, with_probas="probas" in frame.columns)
    return run_suites(
        prepared, built, name="predictions", parameters=_params(policy, now), context=context
    )
