"""Market-data assets: 1-minute candles from REST, their rollups, order-book and trade history.

Built by :func:`build_assets` from the market-data settings (symbols, exchange, first day), so
the partitions exist when the definitions load; the logic lives in ``ats_pipelines.warehouse``.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.partitions import day_symbol_pairs, market_partitions
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.warehouse import reports
from ats_pipelines.warehouse.backfill import BackfillReport, backfill, partition_days
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.flows import (
    AggregateResult,
    aggregate_order_books,
    aggregate_trade_flow,
)
from ats_pipelines.warehouse.intervals import day_runs
from ats_pipelines.warehouse.rollups import RollupResult, levels, rollup, rollup_mode
from ats_pipelines.warehouse.rollups import server_edition as detect_server_edition

GROUP = "market_data"


class CandlesConfig(dg.Config):
    """How a ``candles_1m`` run fetches."""

    repair_only: bool = False  # fetch only the minutes the gap report lists (the repair path)


def _partition_metadata(report: BackfillReport, symbol: str, day: date) -> dict[str, Any]:
    summary = reports.partition_summary(report, symbol, day)
    gaps = [((symbol, day), report.gaps[(symbol, day)])] if (symbol, day) in report.gaps else []
    return {
        **{k: v for k, v in summary.items() if k != "missing_by_reason"},
        "missing_by_reason": dg.MetadataValue.json(summary["missing_by_reason"]),
        "coverage": dg.MetadataValue.md(reports.coverage_markdown(gaps)),
        "gaps": dg.MetadataValue.md(reports.gaps_markdown(gaps)),
    }


def build_candles_1m(settings: MarketDataSettings) -> dg.AssetsDefinition:
    partitions = market_partitions(settings)

    @dg.asset(
        name="candles_1m",
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"timescaledb", "python"},
        tags={"exchange": settings.exchange},
    )
    def candles_1m(
        context: dg.AssetExecutionContext,
        config: CandlesConfig,
        timescale: TimescaleResource,
        exchange: ExchangeResource,
    ) -> dg.MaterializeResult:
        """1-minute OHLCV candles per day and symbol from the exchange's REST API, validated."""
        days = partition_days(day_symbol_pairs(partitions, context.partition_keys))

        async def body(conn: asyncpg.Connection) -> BackfillReport:
            async with exchange.open() as client:
                return await backfill(
                    conn,
                    client,
                    exchange=settings.exchange,
                    days_by_symbol=days,
                    repair_only=config.repair_only,
                )

        context.log.info(f"exchange: {exchange.origin or exchange.rest_url or 'its own hosts'}")
        report = timescale.run(body)
        first, last = report.time_range
        context.log.info(
            f"event=candles_1m mode={report.mode} exchange={settings.exchange} "
            f"symbols={','.join(days)} partitions={len(report.gaps)} "
            f"inserted={report.write.inserted} present={report.write.skipped} "
            f"missing_minutes={report.missing_minutes} first={first} last={last}"
        )
        # each partition's materialisation carries its own numbers, in ranged runs too
        for partition_key, (day, symbol) in zip(
            context.partition_keys,
            day_symbol_pairs(partitions, context.partition_keys),
            strict=True,
        ):
            context.add_asset_metadata(
                _partition_metadata(report, symbol, date.fromisoformat(day)),
                partition_key=partition_key,
            )
        return dg.MaterializeResult()

    return candles_1m


def build_candle_rollups(settings: MarketDataSettings) -> dg.AssetsDefinition:
    pairs = levels(settings.rollup_timeframes)
    specs = [
        dg.AssetSpec(
            f"candles_{target}",
            group_name=GROUP,
            deps=[f"candles_{source}"],
            description=f"{target} candles rolled up from {source} bars; only finished "
            "intervals (continuous aggregate or incremental fallback).",
            kinds={"timescaledb", "sql"},
            automation_condition=dg.AutomationCondition.eager(),
        )
        for source, target in pairs
    ]

    @dg.multi_asset(name="candle_rollups", specs=specs, can_subset=False)
    def candle_rollups(
        context: dg.AssetExecutionContext, timescale: TimescaleResource
    ) -> Iterator[dg.MaterializeResult]:
        """Rolls 1m candles up to every higher timeframe, recomputing only touched buckets."""

        async def body(conn: asyncpg.Connection) -> tuple[str, list[RollupResult]]:
            mode = await rollup_mode(conn)
            results = [
                await rollup(conn, settings.exchange, symbol, settings.rollup_timeframes, mode=mode)
                for symbol in settings.symbols
            ]
            return mode, results

        mode, results = timescale.run(body)
        context.log.info(
            f"event=candle_rollups path={mode} exchange={settings.exchange} "
            f"rows_written={sum(r.rows_written for r in results)}"
        )
        for index, (_, target) in enumerate(pairs):
            per_symbol = [(r, r.levels[index]) for r in results]
            yield dg.MaterializeResult(
                asset_key=f"candles_{target}",
                metadata={
                    "path": mode,
                    "buckets_recomputed": sum(lv.buckets for _, lv in per_symbol),
                    "rows_inserted": sum(lv.inserted for _, lv in per_symbol),
                    "rows_updated": sum(lv.updated for _, lv in per_symbol),
                    "open_buckets_from": dg.MetadataValue.json(
                        {
                            r.symbol: lv.pending_from.isoformat()
                            for r, lv in per_symbol
                            if lv.pending_from is not None
                        }
                    ),
                    "per_symbol": dg.MetadataValue.md(
                        reports.markdown_table(
                            ("symbol", "buckets", "inserted", "updated", "watermark"),
                            [
                                (
                                    r.symbol,
                                    lv.buckets,
                                    lv.inserted,
                                    lv.updated,
                                    r.watermark_to.isoformat() if r.watermark_to else "",
                                )
                                for r, lv in per_symbol
                            ],
                        )
                    ),
                },
            )

    return candle_rollups


def _aggregate_asset(
    settings: MarketDataSettings, name: str, description: str, kind: str
) -> dg.AssetsDefinition:
    partitions = market_partitions(settings)

    @dg.asset(
        name=name,
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"timescaledb", "sql"},
        description=description,
    )
    def aggregate(
        context: dg.AssetExecutionContext, timescale: TimescaleResource
    ) -> dg.MaterializeResult:
        days = partition_days(day_symbol_pairs(partitions, context.partition_keys))

        async def body(conn: asyncpg.Connection) -> list[AggregateResult]:
            edition = await detect_server_edition(conn)
            out = []
            for symbol, symbol_days in days.items():
                for run in day_runs(symbol_days):
                    if kind == "trades":
                        out.append(
                            await aggregate_trade_flow(
                                conn, edition, settings.exchange, symbol, run.start, run.end
                            )
                        )
                    else:
                        out.append(
                            await aggregate_order_books(
                                conn, edition, kind, settings.exchange, symbol, run.start, run.end
                            )
                        )
            return out

        results = timescale.run(body)
        inserted = sum(r.inserted for r in results)
        updated = sum(r.updated for r in results)
        context.log.info(
            f"event={name} exchange={settings.exchange} inserted={inserted} updated={updated}"
        )
        return dg.MaterializeResult(
            metadata={
                "table": results[0].table if results else "",
                "rows_inserted": inserted,
                "rows_updated": updated,
                "symbols": ", ".join(days),
                "days": sum(len(d) for d in days.values()),
            }
        )

    return aggregate


def build_history_assets(settings: MarketDataSettings) -> list[dg.AssetsDefinition]:
    """Order-book 1s/1m aggregates and per-minute trade flow of stored snapshots and trades."""
    return [
        _aggregate_asset(
            settings,
            "order_book_1s_agg",
            "Order-book snapshots per second: mid OHLC, spread, imbalance at "
            "depths 1/5/10, depth within ±5 % of mid.",
            "1s",
        ),
        _aggregate_asset(
            settings,
            "order_book_1m_agg",
            "Order-book snapshots per minute: mid OHLC, spread, imbalance at "
            "depths 1/5/10, depth within ±5 % of mid.",
            "1m",
        ),
        _aggregate_asset(
            settings,
            "trade_flow_1m",
            "Trades per minute: taker buy and sell volume and count, VWAP.",
            "trades",
        ),
    ]


def build_assets(settings: MarketDataSettings) -> list[dg.AssetsDefinition]:
    return [
        build_candles_1m(settings),
        build_candle_rollups(settings),
        *build_history_assets(settings),
    ]
