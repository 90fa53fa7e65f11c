"""Reconciliation and freshness checks: sources that must agree, and streams that must flow.

* ``stream_bars``: ``bars_match_rest`` (stream-built bars vs REST klines of the same minutes,
  WARN) and ``bars_fresh`` (heartbeat + newest bar per streamed symbol, ERROR, non-blocking);
* ``candles_1m``: ``history_matches_rest`` (migrated history vs REST) and ``cex_matches_dex``
  (DEX prices vs the CEX price of the minute), both WARN, over the latest day of data.
"""

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

import asyncpg
import dagster as dg

from ats_pipelines.orchestration.check_results import severity
from ats_pipelines.orchestration.checks import (
    CheckInputs,
    Evaluation,
    quality_check,
    reconciliation_evaluation,
)
from ats_pipelines.orchestration.resources.exchange import ExchangeResource
from ats_pipelines.quality import catalog
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.checkset import data_window
from ats_pipelines.quality.freshness import StreamFreshness, stream_freshness
from ats_pipelines.quality.reconcile_sources import cex_vs_dex, history_vs_rest, stream_vs_rest
from ats_pipelines.warehouse.config import MarketDataSettings
from ats_pipelines.warehouse.reports import markdown_table


def build_rest_reconciliation(
    settings: MarketDataSettings, spec: CheckSpec
) -> dg.AssetChecksDefinition:
    """Stored bars (streamed or migrated) against the exchange's REST klines of the minutes."""

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        start, end = await data_window(
            conn, now=run.now, days=run.quality.reconcile_window_days, exchange=settings.exchange
        )
        exchange: ExchangeResource = run.resource("exchange")
        compare = (
            partial(stream_vs_rest, now=run.now) if spec is catalog.STREAM_REST else history_vs_rest
        )
        async with exchange.open() as client:
            result = await compare(
                conn,
                client,
                exchange=settings.exchange,
                symbols=settings.symbols,
                start=start,
                end=end,
                policy=run.quality.policy(),
            )
        evaluation = reconciliation_evaluation(spec, result, run.quality, (start, end))
        log = f"event=quality_reconcile check={spec.name} {result.summary()}"
        return replace(evaluation, log=log)

    return quality_check(spec, evaluate, resources=("exchange",), blocking=False)


def build_cex_dex_check() -> dg.AssetChecksDefinition:
    """DEX minute VWAPs within tolerance (bps) of the CEX price of the same asset and minute."""
    spec = catalog.CEX_DEX

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        window = await data_window(
            conn, now=datetime.now(UTC), days=run.quality.reconcile_window_days
        )
        result = await cex_vs_dex(conn, start=window[0], end=window[1], policy=run.quality.policy())
        return reconciliation_evaluation(spec, result, run.quality, window)

    return quality_check(spec, evaluate, blocking=False)


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
    """Each streamed symbol: recent heartbeat and 1m bar (unless the market is quiet)."""
    spec = catalog.FRESHNESS

    async def evaluate(run: CheckInputs, conn: asyncpg.Connection) -> Evaluation:
        verdict = await stream_freshness(conn, now=datetime.now(UTC), policy=run.quality.policy())
        return Evaluation(
            result=dg.AssetCheckResult(
                passed=verdict.passed,
                severity=severity(spec),
                description=verdict.summary,
                metadata=freshness_metadata(verdict),
            ),
            rows=len(verdict.symbols),
            window=None,
            failed=[
                {"rule": s.rule, "symbol": s.symbol, "reason": s.reason} for s in verdict.stale
            ],
        )

    return quality_check(spec, evaluate, blocking=False)


def build_reconciliation_checks(settings: MarketDataSettings) -> list[dg.AssetChecksDefinition]:
    return [
        build_rest_reconciliation(settings, catalog.STREAM_REST),
        build_rest_reconciliation(settings, catalog.HISTORY_REST),
        build_cex_dex_check(),
        build_freshness_check(),
    ]
