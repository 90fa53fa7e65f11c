"""Great Expectations suites as asset checks on the market-data assets.

``candles_1m`` (day x symbol) and its rollups are checked blocking: bad candles must not reach
features and training. Order-book aggregates and trade flow are WARN: they inform. Each check
records its evaluation in ``ops.quality_check_runs`` and links the quality report.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import dagster as dg

from ats_pipelines.lib.timeframes import floor_datetime
from ats_pipelines.orchestration.check_results import outcome_failures, record, suite_result
from ats_pipelines.orchestration.partitions import (
    day_symbol_pairs,
    market_partitions,
    run_partition_keys,
)
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.quality import catalog, loaders, validate
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.checkset import data_window, grid_window
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.warehouse.config import MarketDataSettings


def partition_window(days: Sequence[str], now: datetime) -> tuple[datetime, datetime]:
    """The days of a run's partitions as one window, cut at the last closed minute."""
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    return start, max(start, min(end, floor_datetime(now, "1m")))


def _label(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def build_candles_1m_check(settings: MarketDataSettings) -> dg.AssetChecksDefinition:
    partitions = market_partitions(settings)
    spec = catalog.CANDLES_1M

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        partitions_def=partitions,
        description=spec.description,
    )
    def candles_suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Great Expectations suite on the partition's 1m candles; blocks downstream on fail."""
        keys = run_partition_keys(context, partitions)
        pairs = day_symbol_pairs(partitions, keys)
        symbols = sorted({s for _, s in pairs})
        now = datetime.now(UTC)
        window = partition_window([d for d, _ in pairs], now)

        async def body(conn: asyncpg.Connection) -> SuiteOutcome:
            frame = await loaders.load_candles(conn, settings.exchange, symbols, "1m", *window)
            empty = await loaders.load_confirmed_empty(
                conn, settings.exchange, symbols, "1m", *window
            )
            outcome = validate.check_candles(
                frame.drop("source", "trade_count"),
                timeframe="1m",
                policy=quality.policy(),
                now=now,
                window=window,
                confirmed_empty=empty,
                series=[(settings.exchange, s) for s in symbols],
            )
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition=_label(keys),
                rows=outcome.rows,
                window=window,
                coverage=outcome.coverage,
                failed=outcome_failures(outcome),
            )
            return outcome

        outcome = timescale.run(body)
        context.log.info(
            f"event=quality_check check={spec.name} asset={spec.asset} "
            f"partitions={len(keys)} passed={outcome.success} rows={outcome.rows} "
            f"failed_rules={','.join(outcome.failed_rules) or '-'}"
        )
        return suite_result(spec, outcome, quality)

    return candles_suite


def build_rollup_check(settings: MarketDataSettings, timeframe: str) -> dg.AssetChecksDefinition:
    spec = catalog.ROLLUPS[timeframe]

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        description=spec.description,
    )
    def candles_suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Great Expectations suite on the rollup's latest days; blocks downstream on fail."""
        now = datetime.now(UTC)

        async def body(conn: asyncpg.Connection) -> SuiteOutcome:
            latest = await data_window(
                conn, now=now, days=quality.rollup_window_days, exchange=settings.exchange
            )
            window = grid_window(latest, timeframe)
            frame = await loaders.load_candles(
                conn, settings.exchange, settings.symbols, timeframe, *window
            )
            outcome = validate.check_candles(
                frame.drop("source", "trade_count"),
                timeframe=timeframe,
                policy=quality.policy(),
                now=now,
                window=window,
                series=[(settings.exchange, s) for s in settings.symbols],
            )
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition="",
                window=window,
                rows=outcome.rows,
                coverage=outcome.coverage,
                failed=outcome_failures(outcome),
            )
            return outcome

        return suite_result(spec, timescale.run(body), quality)

    return candles_suite


def _bucketed_check(
    settings: MarketDataSettings, spec: CheckSpec, timeframe: str
) -> dg.AssetChecksDefinition:
    partitions = market_partitions(settings)

    @dg.asset_check(
        asset=dg.AssetKey(spec.asset),
        name=spec.name,
        blocking=spec.blocking,
        partitions_def=partitions,
        description=spec.description,
    )
    def suite(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        keys = run_partition_keys(context, partitions)
        pairs = day_symbol_pairs(partitions, keys)
        symbols = sorted({s for _, s in pairs})
        window = partition_window([d for d, _ in pairs], datetime.now(UTC))

        async def body(conn: asyncpg.Connection) -> SuiteOutcome:
            if spec is catalog.TRADE_FLOW:
                frame = await loaders.load_trade_flow(conn, settings.exchange, symbols, *window)
                outcome = validate.check_trade_flow(frame, policy=quality.policy())
            else:
                frame = await loaders.load_book_aggregates(
                    conn, timeframe, settings.exchange, symbols, *window
                )
                outcome = validate.check_order_book_aggregates(
                    frame, timeframe=timeframe, policy=quality.policy()
                )
            await record(
                conn,
                context,
                spec,
                passed=outcome.success,
                partition=_label(keys),
                rows=outcome.rows,
                window=window,
                failed=outcome_failures(outcome),
            )
            return outcome

        return suite_result(spec, timescale.run(body), quality)

    return suite


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
