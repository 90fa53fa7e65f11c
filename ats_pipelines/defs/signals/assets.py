"""Signal assets: the trend analyzers' detections, the coordinator's decisions, and replays.

Built by :func:`build_signal_assets` from the signals settings; the logic lives in
``ats_pipelines.signals``. Sensors launch the first two (no schedules); a person can too.
"""

from datetime import UTC, datetime

import asyncpg
import dagster as dg
from pydantic import Field

from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals import reports
from ats_pipelines.signals.analyzer import AnalyzerRunResult, analyze
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.coordinator import CoordinatorRunResult, run_coordinator
from ats_pipelines.signals.replay import Comparison, ReplayResult, compare_with_live, replay
from ats_pipelines.signals.replay import store_replay as store_replay_rows
from ats_pipelines.warehouse.reports import markdown_table

GROUP = "signals"
DETECTED = "detected_signals"
COORDINATED = "coordinated_signals"
REPLAYED = "replayed_signals"


class AnalyzerRunConfig(dg.Config):
    """Which series one analyzer run covers (empty: every configured one)."""

    symbols: list[str] = Field(default_factory=list)
    timeframes: list[str] = Field(default_factory=list)


class ReplayConfig(dg.Config):
    """The historical range to replay, ISO dates or times in UTC (``2024-05-01``)."""

    start: str
    end: str
    symbols: list[str] = Field(default_factory=list)


def analyzer_run_config(symbol: str, timeframe: str) -> dict:
    """Run config of a ``detected_signals`` run for one series (what the sensors request)."""
    return {"ops": {DETECTED: {"config": {"symbols": [symbol], "timeframes": [timeframe]}}}}


def parse_moment(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise dg.Failure(f"replay {name}={text!r} is not an ISO date or time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _runs_markdown(results: list[AnalyzerRunResult]) -> str:
    rows = [
        (
            r.target.symbol,
            r.target.timeframe,
            r.bars_new,
            len(r.signals),
            r.inserted,
            r.watermark_from.isoformat() if r.watermark_from else "",
            r.watermark_to.isoformat() if r.watermark_to else "",
        )
        for r in results
    ]
    return markdown_table(
        (
            "symbol",
            "timeframe",
            "new bars",
            "signals",
            "inserted",
            "watermark from",
            "watermark to",
        ),
        rows,
    )


def build_detected_signals(settings: SignalsSettings) -> dg.AssetsDefinition:
    @dg.asset(
        name=DETECTED,
        group_name=GROUP,
        deps=[f"candles_{tf}" for tf in settings.timeframes],
        kinds={"timescaledb", "python"},
        tags={"exchange": settings.exchange},
        description="Trend signals (uptrendStart/downtrendStart) per symbol and timeframe, "
        "each closed bar analysed exactly once.",
    )
    def detected_signals(
        context: dg.AssetExecutionContext, config: AnalyzerRunConfig, timescale: TimescaleResource
    ) -> dg.MaterializeResult:
        """Analyses the closed bars after each series' watermark and writes their signals."""

        async def body(conn: asyncpg.Connection) -> tuple:
            results = await analyze(
                conn, settings, config.symbols or None, config.timeframes or None
            )
            counts = await reports.signal_counts(conn, settings.analyzer_id, settings.exchange)
            latest = await reports.latest_signals(conn, settings.analyzer_id, settings.exchange)
            return results, counts, latest

        results, counts, latest = timescale.run(body)
        written = sum(r.inserted for r in results)
        context.log.info(
            f"event=detected_signals analyzer={settings.analyzer_id} "
            f"exchange={settings.exchange} series={len(results)} "
            f"bars={sum(r.bars_new for r in results)} inserted={written}"
        )
        by_tf: dict[str, dict[str, int]] = {}
        for tf, kind, n in counts:
            by_tf.setdefault(tf, {})[kind] = n
        return dg.MaterializeResult(
            metadata={
                "analyzer_id": settings.analyzer_id,
                "bars_analysed": sum(r.bars_new for r in results),
                "signals_written": written,
                "signals_total": sum(n for _, _, n in counts),
                "counts_by_timeframe": dg.MetadataValue.json(by_tf),
                "counts": dg.MetadataValue.md(
                    reports.counts_markdown(("timeframe", "type", "signals"), counts)
                ),
                "latest": dg.MetadataValue.md(reports.signals_markdown(latest)),
                "runs": dg.MetadataValue.md(_runs_markdown(results)),
            }
        )

    return detected_signals


def build_coordinated_signals(settings: SignalsSettings) -> dg.AssetsDefinition:
    rules = settings.coordinator

    @dg.asset(
        name=COORDINATED,
        group_name=GROUP,
        deps=[DETECTED],
        kinds={"timescaledb", "python"},
        description=f"Decisions combining {', '.join(rules.timeframes)} signals (confluence, "
        "single, conflict); the last one per symbol is the one in force.",
    )
    def coordinated_signals(
        context: dg.AssetExecutionContext, timescale: TimescaleResource
    ) -> dg.MaterializeResult:
        """Decides every signal whose timeframes are final, after the coordinator watermark."""

        async def body(conn: asyncpg.Connection) -> tuple[CoordinatorRunResult, list, list]:
            result = await run_coordinator(conn, settings.analyzer_id, rules)
            counts = await reports.decision_counts(conn, rules.coordinator_id)
            latest = await reports.latest_decisions(conn, rules.coordinator_id)
            return result, counts, latest

        result, counts, latest = timescale.run(body)
        context.log.info(
            f"event=coordinated_signals coordinator={rules.coordinator_id} "
            f"decisions={len(result.decisions)} waiting={result.waiting} "
            f"watermark={result.watermark_to}"
        )
        return dg.MaterializeResult(
            metadata={
                "coordinator_id": rules.coordinator_id,
                "decisions_written": len(result.decisions),
                "signals_waiting": result.waiting,
                "last_signal_id": result.watermark_to,
                "counts": dg.MetadataValue.md(
                    reports.counts_markdown(("decision", "direction", "count"), counts)
                ),
                "latest_per_symbol": dg.MetadataValue.md(reports.decisions_markdown(latest)),
                "new_decisions": dg.MetadataValue.md(
                    reports.decisions_markdown(
                        [
                            {
                                "symbol": d.symbol,
                                "decided_at": d.decided_at,
                                "decision": d.decision,
                                "direction": d.direction,
                                "confidence": d.confidence,
                            }
                            for d in result.decisions[-20:]
                        ]
                    )
                ),
            }
        )

    return coordinated_signals


def build_replayed_signals(settings: SignalsSettings) -> dg.AssetsDefinition:
    @dg.asset(
        name=REPLAYED,
        group_name=GROUP,
        deps=[DETECTED, COORDINATED],
        kinds={"timescaledb", "python"},
        description="A replay of analyzers and coordinator over a historical range from the "
        "stored bars, compared row by row with the live output.",
    )
    def replayed_signals(
        context: dg.AssetExecutionContext, config: ReplayConfig, timescale: TimescaleResource
    ) -> dg.MaterializeResult:
        """Replays a range and stores the result next to the live tables (per run id)."""
        start, end = parse_moment(config.start, "start"), parse_moment(config.end, "end")
        if start >= end:
            raise dg.Failure(f"replay range is empty: start {start} >= end {end}")

        async def body(conn: asyncpg.Connection) -> tuple[ReplayResult, Comparison]:
            result = await replay(conn, settings, start, end, symbols=config.symbols or None)
            comparison = await compare_with_live(conn, result)
            await store_replay_rows(conn, context.run_id, result, comparison)
            return result, comparison

        result, comparison = timescale.run(body)
        context.log.info(
            f"event=signal_replay replay_id={context.run_id} start={start} "
            f"end={result.end} signals={len(result.signals)} "
            f"decisions={len(result.decisions)} matches_live={comparison.matches}"
        )
        if not comparison.matches:
            context.log.warning(
                f"event=signal_replay_mismatch replay_id={context.run_id} "
                f"only_live={len(comparison.only_live)} "
                f"only_replay={len(comparison.only_replay)}"
            )
        return dg.MaterializeResult(
            metadata={
                "replay_id": context.run_id,
                "range": f"{start.isoformat()} .. {result.end.isoformat()}",
                "signals": len(result.signals),
                "decisions": len(result.decisions),
                "live_signals": comparison.live_signals,
                "live_decisions": comparison.live_decisions,
                "matches_live": comparison.matches,
                "differences": dg.MetadataValue.json(comparison.as_dict()),
            }
        )

    return replayed_signals


def build_signal_assets(settings: SignalsSettings) -> list[dg.AssetsDefinition]:
    return [
        build_detected_signals(settings),
        build_coordinated_signals(settings),
        build_replayed_signals(settings),
    ]
