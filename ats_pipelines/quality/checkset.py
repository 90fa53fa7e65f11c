"""The full check set over a window: every suite on every table that has rows in it, the
reconciliations, stream freshness and the quality scores. The report asset runs it (and the
benchmark times it); the Dagster asset checks run the same pieces one asset at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import polars as pl

from ats_pipelines.exchange.errors import (
    ExchangeDataError,
    PermanentExchangeError,
    RetriesExhausted,
)
from ats_pipelines.features.catalog import FAMILIES
from ats_pipelines.features.lake import Lake
from ats_pipelines.lib.timeframes import bucket_end_ms, floor_datetime
from ats_pipelines.quality import catalog, loaders, validate
from ats_pipelines.quality.catalog import CheckSpec
from ats_pipelines.quality.features_spec import LABEL_SPEC
from ats_pipelines.quality.freshness import StreamFreshness, stream_freshness
from ats_pipelines.quality.history import CheckRun, quarantined_counts
from ats_pipelines.quality.lake_checks import check_feature_days, check_label_days
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.reconcile import Reconciliation
from ats_pipelines.quality.reconcile_sources import (
    KlineSource,
    cex_vs_dex,
    history_vs_rest,
    stream_vs_rest,
)
from ats_pipelines.quality.runner import SuiteOutcome
from ats_pipelines.quality.score import candle_scores

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )

TIMEFRAMES = ("1m", *catalog.CANDLE_ROLLUPS)
MINUTE = timedelta(minutes=1)
# the exchange cannot answer: the reconciliation is reported as failed, the report still builds
UNAVAILABLE = (RetriesExhausted, PermanentExchangeError, ExchangeDataError, OSError)


@dataclass
class Entry:
    """One check's verdict in a check-set run (a suite, a reconciliation or freshness)."""

    spec: CheckSpec
    label: str  # what it covered, e.g. "binance" or "binance BTC/USDT"
    passed: bool
    rows: int
    summary: str
    outcome: SuiteOutcome | None = None
    reconciliation: Reconciliation | None = None
    freshness: StreamFreshness | None = None

    @property
    def coverage(self) -> float | None:
        return self.outcome.coverage if self.outcome else None

    def failed(self) -> list[dict[str, Any]]:
        if self.outcome:
            return [
                {
                    "rule": f.rule,
                    "expectation": f.expectation,
                    "columns": list(f.columns),
                    "rows": f.unexpected_count,
                    "observed": f.observed,
                }
                for f in self.outcome.failures
            ]
        if self.reconciliation and not self.reconciliation.passed:
            return [
                {
                    "rule": self.reconciliation.rule,
                    "rows": self.reconciliation.disagreements.height
                    + self.reconciliation.only_left.height,
                }
            ]
        if self.freshness:
            return [
                {"rule": s.rule, "symbol": s.symbol, "reason": s.reason}
                for s in self.freshness.stale
            ]
        return []

    def check_run(
        self, run_id: str, window: tuple[datetime, datetime], evaluated_at: datetime | None = None
    ) -> CheckRun:
        return CheckRun(
            run_id=run_id,
            asset=self.spec.asset,
            check_name=self.spec.name,
            partition=self.label,
            passed=self.passed,
            severity=self.spec.severity,
            blocking=self.spec.blocking,
            rows_checked=self.rows,
            coverage=self.coverage,
            failed=self.failed(),
            window_start=window[0],
            window_end=window[1],
            evaluated_at=evaluated_at,
        )


@dataclass
class CheckSetResult:
    window: tuple[datetime, datetime]
    entries: list[Entry] = field(default_factory=list)
    scores: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)


def _suite_entry(spec: CheckSpec, label: str, outcome: SuiteOutcome) -> Entry:
    return Entry(spec, label, outcome.success, outcome.rows, outcome.summary(), outcome=outcome)


def grid_window(window: tuple[datetime, datetime], timeframe: str) -> tuple[datetime, datetime]:
    """The part of ``window`` made of whole ``timeframe`` buckets (rollups hold only those)."""
    start = floor_datetime(window[0], timeframe)
    if start < window[0]:
        start = datetime.fromtimestamp(
            bucket_end_ms(int(start.timestamp() * 1000), timeframe) / 1000, window[0].tzinfo
        )
    end = floor_datetime(window[1], timeframe)
    return start, max(start, end)


async def _exchanges(
    conn: asyncpg.Connection,
    table: str,
    window: tuple[datetime, datetime],
) -> dict[str, list[str]]:
    rows = await conn.fetch(
        f"SELECT DISTINCT exchange, symbol FROM {table} "  # noqa: S608
        "WHERE ts >= $1 AND ts < $2 ORDER BY 1, 2",
        *window,
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["exchange"], []).append(r["symbol"])
    return out


async def candle_entries(
    conn: asyncpg.Connection,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
    policy: QualityPolicy,
    timeframes: Sequence[str] = TIMEFRAMES,
    context: AbstractDataContext | None = None,
) -> list[Entry]:
    out = []
    for tf in timeframes:
        grid = grid_window(window, tf)
        by_exchange: dict[str, list[str]] = {}
        for exchange, symbol in await loaders.candle_series(conn, tf, *grid):
            by_exchange.setdefault(exchange, []).append(symbol)
        for exchange, symbols in by_exchange.items():
            frame = await loaders.load_candles(conn, exchange, symbols, tf, *grid)
            empty = await loaders.load_confirmed_empty(conn, exchange, symbols, tf, *grid)
            outcome = validate.check_candles(
                frame.drop("source", "trade_count"),
                timeframe=tf,
                policy=policy,
                now=now,
                window=grid,
                confirmed_empty=empty,
                series=[(exchange, s) for s in symbols],
                context=context,
            )
            spec = catalog.CANDLES_1M if tf == "1m" else catalog.ROLLUPS[tf]
            out.append(_suite_entry(spec, exchange, outcome))
    return out


async def table_entries(
    conn: asyncpg.Connection,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
    policy: QualityPolicy,
    context: AbstractDataContext | None = None,
) -> list[Entry]:
    out = []
    for exchange, symbols in (await _exchanges(conn, "market.trades", window)).items():
        frame = pl.concat([await loaders.load_trades(conn, exchange, s, *window) for s in symbols])
        out.append(
            _suite_entry(
                catalog.TRADES,
                exchange,
                validate.check_trades(frame, policy=policy, now=now, context=context),
            )
        )
    for exchange, symbols in (
        await _exchanges(conn, "market.order_book_snapshots", window)
    ).items():
        frame = pl.concat(
            [await loaders.load_order_books(conn, exchange, s, *window) for s in symbols]
        )
        out.append(
            _suite_entry(
                catalog.BOOKS,
                exchange,
                validate.check_order_books(frame, policy=policy, now=now, context=context),
            )
        )
    for tf in ("1s", "1m"):
        table = f"market.order_book_{tf}_agg"
        for exchange, symbols in (await _exchanges(conn, table, window)).items():
            frame = await loaders.load_book_aggregates(conn, tf, exchange, symbols, *window)
            out.append(
                _suite_entry(
                    catalog.BOOK_AGG[tf],
                    exchange,
                    validate.check_order_book_aggregates(
                        frame, timeframe=tf, policy=policy, context=context
                    ),
                )
            )
    for exchange, symbols in (await _exchanges(conn, "market.trade_flow_1m", window)).items():
        frame = await loaders.load_trade_flow(conn, exchange, symbols, *window)
        out.append(
            _suite_entry(
                catalog.TRADE_FLOW,
                exchange,
                validate.check_trade_flow(frame, policy=policy, context=context),
            )
        )
    signals = await loaders.load_signals(conn, *window)
    if signals.height:
        out.append(
            _suite_entry(
                catalog.SIGNALS,
                "all models",
                validate.check_signals(signals, policy=policy, now=now, context=context),
            )
        )
    return out


def _recon_entry(spec: CheckSpec, label: str, result: Reconciliation) -> Entry:
    return Entry(
        spec, label, result.passed, result.compared, result.summary(), reconciliation=result
    )


async def reconciliation_entries(
    conn: asyncpg.Connection,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
    policy: QualityPolicy,
    clients: dict[str, KlineSource],
) -> list[Entry]:
    """Stream/history vs REST for exchanges with a client; CEX vs DEX where both exist."""
    out = []
    candles = await _exchanges(conn, "market.candles", window)
    for exchange, client in clients.items():
        symbols = candles.get(exchange, [])
        if not symbols:
            continue
        for spec in (catalog.STREAM_REST, catalog.HISTORY_REST):
            try:
                if spec is catalog.STREAM_REST:
                    result = await stream_vs_rest(
                        conn,
                        client,
                        exchange=exchange,
                        symbols=symbols,
                        start=window[0],
                        end=window[1],
                        now=now,
                        policy=policy,
                    )
                else:
                    result = await history_vs_rest(
                        conn,
                        client,
                        exchange=exchange,
                        symbols=symbols,
                        start=window[0],
                        end=window[1],
                        policy=policy,
                    )
            except UNAVAILABLE as exc:
                out.append(
                    Entry(
                        spec,
                        exchange,
                        False,
                        0,
                        f"{spec.name}: the REST API of "
                        f"{exchange} did not answer ({type(exc).__name__}: {exc})",
                    )
                )
                continue
            if result.compared or not result.passed:
                out.append(_recon_entry(spec, exchange, result))
    dex = await cex_vs_dex(conn, start=window[0], end=window[1], policy=policy)
    if dex.compared:
        out.append(_recon_entry(catalog.CEX_DEX, "all assets", dex))
    return out


async def freshness_entry(
    conn: asyncpg.Connection, *, now: datetime, policy: QualityPolicy
) -> Entry:
    verdict = await stream_freshness(conn, now=now, policy=policy)
    return Entry(
        catalog.FRESHNESS,
        "stream",
        verdict.passed,
        len(verdict.symbols),
        verdict.summary,
        freshness=verdict,
    )


async def lake_entries(
    conn: asyncpg.Connection,
    lake: Lake,
    window: tuple[datetime, datetime],
    *,
    policy: QualityPolicy,
) -> list[Entry]:
    """Feature families and labels of the window's days, for every series with 1m candles
    (families and label sets with files of this exchange in the window)."""
    days = [window[0].date() + timedelta(days=i) for i in range((window[1] - window[0]).days + 1)]
    out = []
    for exchange, symbols in (await _exchanges(conn, "market.candles", window)).items():
        by_symbol = {
            s: [
                d
                for d in days
                if lake.files(LABEL_SPEC.dataset, exchange, s, [d])
                or any(lake.files(f.dataset, exchange, s, [d]) for f in FAMILIES.values())
            ]
            for s in symbols
        }
        by_symbol = {s: d for s, d in by_symbol.items() if d}
        if not by_symbol:
            continue  # nothing of this exchange went through the features pipeline
        for family in FAMILIES.values():
            if not any(lake.files(family.dataset, exchange, s, d) for s, d in by_symbol.items()):
                continue  # a family never built here (the partitioned checks are strict)
            outcome = await check_feature_days(conn, lake, family, exchange, by_symbol, policy)
            out.append(_suite_entry(catalog.FEATURES[family.name], exchange, outcome))
        if any(lake.files(LABEL_SPEC.dataset, exchange, s, d) for s, d in by_symbol.items()):
            labels = check_label_days(lake, LABEL_SPEC.dataset, exchange, by_symbol, policy)
            out.append(_suite_entry(catalog.LABELS, exchange, labels))
    return out


async def run_check_set(
    conn: asyncpg.Connection,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
    policy: QualityPolicy,
    clients: dict[str, KlineSource] | None = None,
    lake: Lake | None = None,
    context: AbstractDataContext | None = None,
) -> CheckSetResult:
    result = CheckSetResult(window)
    result.entries += await candle_entries(conn, window, now=now, policy=policy, context=context)
    result.entries += await table_entries(conn, window, now=now, policy=policy, context=context)
    if lake is not None:
        result.entries += await lake_entries(conn, lake, window, policy=policy)
    result.entries += await reconciliation_entries(
        conn, window, now=now, policy=policy, clients=clients or {}
    )
    result.entries.append(await freshness_entry(conn, now=now, policy=policy))
    result.scores = await scores(conn, window, now=now, policy=policy)
    return result


async def scores(
    conn: asyncpg.Connection,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
    policy: QualityPolicy,
) -> pl.DataFrame:
    frames, empties = [], []
    for exchange, symbols in (await _exchanges(conn, "market.candles", window)).items():
        frames.append(await loaders.load_candles(conn, exchange, symbols, "1m", *window))
        empties.append(await loaders.load_confirmed_empty(conn, exchange, symbols, "1m", *window))
    if not frames:
        return pl.DataFrame()
    return candle_scores(
        pl.concat(frames),
        pl.concat(empties),
        await quarantined_counts(conn, *window),
        window=window,
        now=now,
        policy=policy,
    )


async def data_window(
    conn: asyncpg.Connection, *, now: datetime, days: int, exchange: str | None = None
) -> tuple[datetime, datetime]:
    """The last ``days`` days of 1m candles (of ``exchange``, or all): ending after the newest
    bar, or now if sooner. Reads ``max(ts)`` over those candles (the checks run daily)."""
    last = await conn.fetchval(
        "SELECT max(ts) FROM market.candles WHERE timeframe = '1m' AND ts <= $1 "
        "AND ($2::text IS NULL OR exchange = $2)",
        now,
        exchange,
    )
    end = floor_datetime(now, "1m")
    if last is not None:
        end = min(end, last + MINUTE)
    return end - timedelta(days=days), end
