"""Reconciliation and freshness checks: sources that must agree, and streams that must flow.

* ``stream_bars``: ``bars_match_rest`` (stream-built bars vs REST klines of the same minutes,
  WARN) and ``bars_fresh`` (heartbeat + newest bar per streamed symbol, ERROR, non-blocking);
* ``candles_1m``: ``history_matches_rest`` (migrated history vs REST) and ``cex_matches_dex``
  (DEX prices vs the CEX price of the minute), both WARN, over the latest day of data.
"""

from datetime import UTC, datetime

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.check_results import reconciliation_metadata, record, severity
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.orchestration.resources.quality import QualityResource
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.quality import catalog
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.checkset import data_window
from ats_pipelines.quality.freshness import StreamFreshness, stream_freshness
from ats_pipelines.quality.reconcile import Reconciliation
from ats_pipelines.quality.reconcile_sources import cex_vs_dex, history_vs_rest, stream_vs_rest
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.reports import markdown_table


def _reconciled(
    spec: CheckSpec, result: Reconciliation, quality: QualityResource
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=severity(spec),
        description=result.summary(),
        metadata=reconciliation_metadata(result, quality),
    )


def build_rest_reconciliation(
    settings: MarketDataSettings, spec: CheckSpec
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(spec.asset), name=spec.name, blocking=False, description=spec.description
    )
    def reconciliation(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        exchange: ExchangeResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        now = datetime.now(UTC)

        async def body(conn: asyncpg.Connection) -> Reconciliation:
            window = await data_window(
                conn, now=now, days=quality.reconcile_window_days, exchange=settings.exchange
            )
            async with exchange.open() as client:
                if spec is catalog.STREAM_REST:
                    result = await stream_vs_rest(
                        conn,
                        client,
                        exchange=settings.exchange,
                        symbols=settings.symbols,
                        start=window[0],
                        end=window[1],
                        now=now,
                        policy=quality.policy(),
                    )
                else:
                    result = await history_vs_rest(
                        conn,
                        client,
                        exchange=settings.exchange,
                        symbols=settings.symbols,
                        start=window[0],
                        end=window[1],
                        policy=quality.policy(),
                    )
            await record(
                conn,
                context,
                spec,
                passed=result.passed,
                partition="",
                rows=result.compared,
                window=window,
                failed=[]
                if result.passed
                else [{"rule": result.rule, "rows": result.disagreements.height}],
            )
            return result

        result = timescale.run(body)
        context.log.info(f"event=quality_reconcile check={spec.name} {result.summary()}")
        return _reconciled(spec, result, quality)

    return reconciliation


def build_cex_dex_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(catalog.CEX_DEX.asset),
        name=catalog.CEX_DEX.name,
        blocking=False,
        description=catalog.CEX_DEX.description,
    )
    def cex_matches_dex(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """DEX minute VWAPs within tolerance (bps) of the CEX price of the same asset and minute."""
        spec = catalog.CEX_DEX

        async def body(conn: asyncpg.Connection) -> Reconciliation:
            window = await data_window(
                conn, now=datetime.now(UTC), days=quality.reconcile_window_days
            )
            result = await cex_vs_dex(conn, start=window[0], end=window[1], policy=quality.policy())
            await record(
                conn,
                context,
                spec,
                passed=result.passed,
                partition="",
                rows=result.compared,
                window=window,
                failed=[]
                if result.passed
                else [{"rule": result.rule, "rows": result.disagreements.height}],
            )
            return result

        return _reconciled(spec, timescale.run(body), quality)

    return cex_matches_dex


def freshness_metadata(verdict: StreamFreshness) -> dict[str, dg.MetadataValue]:
    rows = [
        (
            s.exchange,
            s.symbol,
            s.shard,
            f"{s.beat_age_s:.0f}",
            s.last_bar or "",
            "" if s.bar_lag_s is None else f"{s.bar_lag_s:.0f}",
            "fresh" if s.fresh else "STALE",
            s.reason,
        )
        for s in verdict.symbols
    ]
    return {
        "symbols": dg.MetadataValue.int(len(verdict.symbols)),
        "stale": dg.MetadataValue.json([f"{s.exchange} {s.symbol}" for s in verdict.stale]),
        "verdicts": dg.MetadataValue.md(
            markdown_table(
                (
                    "exchange",
                    "symbol",
                    "shard",
                    "beat age s",
                    "newest bar",
                    "bar lag s",
                    "status",
                    "reason",
                ),
                rows,
            )
        ),
    }


def build_freshness_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(catalog.FRESHNESS.asset),
        name=catalog.FRESHNESS.name,
        blocking=False,
        description=catalog.FRESHNESS.description,
    )
    def bars_fresh(
        context: dg.AssetCheckExecutionContext,
        timescale: TimescaleResource,
        quality: QualityResource,
    ) -> dg.AssetCheckResult:
        """Each streamed symbol: recent heartbeat and 1m bar (unless the market is quiet)."""
        spec = catalog.FRESHNESS

        async def body(conn: asyncpg.Connection) -> StreamFreshness:
            verdict = await stream_freshness(conn, now=datetime.now(UTC), policy=quality.policy())
            await record(
                conn,
                context,
                spec,
                passed=verdict.passed,
                partition="",
                rows=len(verdict.symbols),
                window=None,
                failed=[
                    {"rule": s.rule, "symbol": s.symbol, "reason": s.reason} for s in verdict.stale
                ],
            )
            return verdict

        verdict = timescale.run(body)
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=severity(spec),
            description=verdict.summary,
            metadata=freshness_metadata(verdict),
        )

    return bars_fresh


def build_reconciliation_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    return [
        build_rest_reconciliation(settings, catalog.STREAM_REST),
        build_rest_reconciliation(settings, catalog.HISTORY_REST),
        build_cex_dex_check(),
        build_freshness_check(),
    ]
