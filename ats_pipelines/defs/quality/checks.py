"""Great Expectations suites as asset checks on the market-data assets.

``candles_1m`` (day x symbol) and its rollups are checked blocking: bad candles must not reach
features and training. Order-book aggregates and trade flow are WARN: they inform. Each check
records its evaluation in ``ops.quality_check_runs`` and links the quality report.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import dagster as dg

from ats_pipelines.lib.timeframes import floor_datetime
from ats_pipelines.orchestration.checks import (
    CheckInputs,
    Evaluation,
    quality_check,
    suite_evaluation,
)
from ats_pipelines.orchestration.partitions import market_partitions
from ats_pipelines.quality import catalog, loaders, validate
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.checkset import data_window, grid_window
from ats_pipelines.warehouse.config import MarketDataSettings


def partition_window(days: Sequence[str], now: datetime) -> tuple[datetime, datetime]:
    """The days of a run's partitions as one window, cut at the last closed minute."""
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    return start, max(start, min(end, floor_datetime(now, "1m")))


def build_candles_1m_check(settings: MarketDataSettings) -> dg.AssetChecksDefinition:
    """Great Expectations suite on the partition's 1m candles; blocks downstream on fail."""
    spec = catalog.CANDLES_1M

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        symbols, now = run.symbols, run.now
        window = partition_window([d for d, _ in run.pairs], now)
        frame = await loaders.load_candles(conn, settings.exchange, symbols, "1m", *window)
        empty = await loaders.load_confirmed_empty(conn, settings.exchange, symbols, "1m", *window)
        outcome = validate.check_candles(
            frame.drop("source", "trade_count"),
            timeframe="1m",
            policy=run.quality.policy(),
            now=now,
            window=window,
            confirmed_empty=empty,
            series=[(settings.exchange, s) for s in symbols],
        )
        evaluation = suite_evaluation(spec, outcome, run.quality, window, outcome.coverage)
        log = (
            f"event=quality_check check={spec.name} asset={spec.asset} "
            f"partitions={len(run.keys)} passed={outcome.success} rows={outcome.rows} "
            f"failed_rules={','.join(outcome.failed_rules) or '-'}"
        )
        return replace(evaluation, log=log)

    return quality_check(spec, evaluate, partitions=market_partitions(settings))


def build_rollup_check(settings: MarketDataSettings, timeframe: str) -> dg.AssetChecksDefinition:
    """Great Expectations suite on the rollup's latest days; blocks downstream on fail."""
    spec = catalog.ROLLUPS[timeframe]

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        latest = await data_window(
            conn, now=run.now, days=run.quality.rollup_window_days, exchange=settings.exchange
        )
        window = grid_window(latest, timeframe)
        frame = await loaders.load_candles(
            conn, settings.exchange, settings.symbols, timeframe, *window
        )
        outcome = validate.check_candles(
            frame.drop("source", "trade_count"),
            timeframe=timeframe,
            policy=run.quality.policy(),
            now=run.now,
            window=window,
            series=[(settings.exchange, s) for s in settings.symbols],
        )
        return suite_evaluation(spec, outcome, run.quality, window, outcome.coverage)

    return quality_check(spec, evaluate)


def _bucketed_check(
    settings: MarketDataSettings, spec: CheckSpec, timeframe: str
) -> dg.AssetChecksDefinition:
    """Order-book aggregates or trade flow of the run's partitions."""

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        symbols, policy = run.symbols, run.quality.policy()
        window = partition_window([d for d, _ in run.pairs], run.now)
        if spec is catalog.TRADE_FLOW:
            frame = await loaders.load_trade_flow(conn, settings.exchange, symbols, *window)
            outcome = validate.check_trade_flow(frame, policy=policy)
        else:
            frame = await loaders.load_book_aggregates(
                conn, timeframe, settings.exchange, symbols, *window
            )
            outcome = validate.check_order_book_aggregates(
                frame, timeframe=timeframe, policy=policy
            )
        return suite_evaluation(spec, outcome, run.quality, window)

    return quality_check(spec, evaluate, partitions=market_partitions(settings))


def build_market_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    """The suites of every market-data asset of these settings."""
    return [
        build_candles_1m_check(settings),
        *[
            build_rollup_check(settings, tf)
            for tf in settings.rollup_timeframes
            if tf in catalog.ROLLUPS
        ],
        *[_bucketed_check(settings, catalog.BOOK_AGG[tf], tf) for tf in ("1s", "1m")],
        _bucketed_check(settings, catalog.TRADE_FLOW, "1m"),
    ]
