"""`make demo`: the platform end to end on the local server, step by step.

Each step materialises its assets through Dagster (on the instance the UI uses, so the runs
show up there) and returns a few lines for the summary. Later work appends steps to ``STEPS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from ats_pipelines.config import Settings
from ats_pipelines.db.connect import connection
from ats_pipelines.db.inventory import markdown_table, table_summaries
from ats_pipelines.universe import Universe, load_universe

if TYPE_CHECKING:
    from ats_pipelines.orchestration.resources.models import ScopeConfig


def _console(run_config: Any = None) -> dict[str, Any]:
    """``run_config`` with Dagster's console logger at WARNING: its per-event DEBUG lines are
    noise in the demo's output (the runs keep every event for the UI); ``-v`` shows them."""
    from ats_pipelines.cli.common import verbose_logging

    level = "DEBUG" if verbose_logging() else "WARNING"
    return {**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}}


def _materialize(assets: Any, *, run_config: Any = None, **kwargs: Any) -> dg.ExecuteInJobResult:
    return dg.materialize(assets, run_config=_console(run_config), **kwargs)


@dataclass(frozen=True)
class DemoContext:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    universe: Universe = field(default_factory=load_universe)  # read once, shared by the steps

    def materialize(
        self, selection: str, partition_key: str | None = None
    ) -> dg.ExecuteInJobResult:
        """Materialise ``selection`` (an asset selection string) with the project's resources."""
        graph = self.defs.resolve_asset_graph()
        keys = dg.AssetSelection.from_string(selection).resolve(graph)
        assets = [
            a
            for a in self.defs.assets or []
            if isinstance(a, dg.AssetsDefinition) and set(a.keys) & keys
        ]
        result = _materialize(
            assets,
            instance=self.instance,
            resources=self.defs.resources,
            selection=list(keys),
            partition_key=partition_key,
        )
        if not result.success:
            raise RuntimeError(f"demo step failed: materialising {selection}")
        return result


@dataclass(frozen=True)
class DemoStep:
    name: str
    run: Callable[[DemoContext], list[str]]


def _platform(ctx: DemoContext) -> list[str]:
    result = ctx.materialize("key:database_schema")
    meta = result.asset_materializations_for_node("database_schema")[0].metadata
    edition = meta["edition"].value
    version = meta["timescaledb_version"].value
    return [f"edition: {edition} (timescaledb {version})"]


def _rollup_selection(ctx: DemoContext) -> str | None:
    """The candle rollups' asset keys (one multi-asset, materialised whole), if defined."""
    for asset in ctx.defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey("candles_5m") in asset.keys:
            return " or ".join(f"key:{k.to_user_string()}" for k in sorted(asset.keys))
    return None


def _signals(ctx: DemoContext) -> list[str]:
    """Analyzers and coordinator over the bars stored so far (run after the market-data step:
    the rollups are brought up to date first, the analyzers read every closed bar)."""
    rollups = _rollup_selection(ctx)
    if rollups:
        ctx.materialize(rollups)
    detected = ctx.materialize("key:detected_signals")
    meta = detected.asset_materializations_for_node("detected_signals")[0].metadata
    counts = meta["counts_by_timeframe"].value
    assert isinstance(counts, dict)
    lines = [
        f"analyzed {meta['bars_analysed'].value} new bars, wrote "
        f"{meta['signals_written'].value} signals ({meta['signals_total'].value} stored)"
    ]
    lines += [
        f"  {tf}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        for tf, kinds in counts.items()
    ]
    lines += ["latest signals:", *_table_lines(str(meta["latest"].value), 5)]
    coordinated = ctx.materialize("key:coordinated_signals")
    meta = coordinated.asset_materializations_for_node("coordinated_signals")[0].metadata
    lines += [
        f"coordinator wrote {meta['decisions_written'].value} decisions "
        f"({meta['signals_waiting'].value} signals waiting for final timeframes)",
        *_table_lines(str(meta["counts"].value), 10),
        "last decision per symbol:",
        *_table_lines(str(meta["latest_per_symbol"].value), 10),
    ]
    return lines + _signal_replay(ctx)


def _signal_replay(ctx: DemoContext) -> list[str]:
    """Replays the last three days from the stored bars and compares with the live rows."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=3)
    assets = [
        a
        for a in ctx.defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("replayed_signals") in a.keys
    ]
    config = {
        "ops": {
            "replayed_signals": {"config": {"start": start.isoformat(), "end": end.isoformat()}}
        }
    }
    result = _materialize(
        assets, instance=ctx.instance, resources=ctx.defs.resources, run_config=config
    )
    meta = result.asset_materializations_for_node("replayed_signals")[0].metadata
    return [
        f"replay {meta['range'].value}: {meta['signals'].value} signals, "
        f"{meta['decisions'].value} decisions; equal to the live rows: "
        f"{meta['matches_live'].value}"
    ]


def _table_lines(markdown: str, limit: int) -> list[str]:
    rows = [line for line in markdown.splitlines() if not line.startswith("|--")]
    return ["  " + line for line in rows[: limit + 1]]


def _candle_runs(
    ctx: DemoContext,
    resources: dict[str, object],
    symbols: list[str],
    days: list[str],
    *,
    repair: bool = False,
) -> list[dg.ExecuteInJobResult]:
    """One ranged run per symbol over ``days`` of ``candles_1m`` and its gap check."""
    assets: list[dg.AssetsDefinition] = [
        a
        for a in ctx.defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("candles_1m") in a.keys
    ]
    gap_check = dg.AssetCheckKey(dg.AssetKey("candles_1m"), "no_missing_minutes")
    assets += [c for c in ctx.defs.asset_checks or [] if gap_check in c.check_keys]
    config = {"ops": {"candles_1m": {"config": {"repair_only": True}}}} if repair else None
    return [
        _materialize(
            assets,
            instance=ctx.instance,
            resources=resources,
            selection=dg.AssetSelection.assets("candles_1m"),
            run_config=config,
            tags={
                "dagster/asset_partition_range_start": f"{days[0]}|{symbol}",
                "dagster/asset_partition_range_end": f"{days[-1]}|{symbol}",
            },
        )
        for symbol in symbols
    ]


def _checks_line(results: list[dg.ExecuteInJobResult], symbols: list[str]) -> str:
    parts = []
    for symbol, result in zip(symbols, results, strict=True):
        for evaluation in result.get_asset_check_evaluations():
            missing = evaluation.metadata["missing_minutes"].value
            parts.append(
                f"{symbol} {'passed' if evaluation.passed else 'FAILED'}"
                + (f" ({missing} missing minutes)" if missing else "")
            )
    return "gap check: " + ", ".join(parts)


async def _market_counts(
    url: str, exchange: str, symbols: list[str], start: object, end: object
) -> list[tuple[str, int]]:
    async with connection(url) as conn:
        rows = await conn.fetch(
            "SELECT timeframe, count(*) AS n FROM market.candles WHERE exchange = $1 AND "
            "symbol = ANY($2) AND ts >= $3 AND ts < $4 GROUP BY timeframe",
            exchange,
            symbols,
            start,
            end,
        )
    return [(r["timeframe"], r["n"]) for r in rows]


def _market_data(ctx: DemoContext) -> list[str]:
    """Two symbols × two days of 1m candles from the emulator (with a gap it withholds, found
    by the check and repaired), rolled up; rows per timeframe and the gap report."""
    from datetime import UTC, datetime, timedelta

    from ats_pipelines.emulator.kline_faults import install_kline_faults
    from ats_pipelines.emulator.server import EmulatorConfig
    from ats_pipelines.emulator.testing import emulator_in_thread
    from ats_pipelines.lib.timeframes import sort_timeframes
    from ats_pipelines.orchestration.resources.exchange import ExchangeResource

    market = ctx.universe
    symbols = list(market.symbols[:2])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [(today - timedelta(days=n)).date().isoformat() for n in (2, 1)]
    withheld = [today - timedelta(days=2) + timedelta(hours=13, minutes=m) for m in range(3)]
    lines = []
    with emulator_in_thread(EmulatorConfig(birdeye=None)) as emulator:
        resources = {
            **(ctx.defs.resources or {}),
            "exchange": ExchangeResource(exchange_id=market.exchange, rest_url=emulator.rest_url),
        }
        faults = install_kline_faults(emulator, symbols[0].replace("/", ""))
        faults.withhold(withheld)
        backfill = _candle_runs(ctx, resources, symbols, days)
        # every partition's materialisation carries its own numbers: sum them all
        metas = [
            m.metadata for r in backfill for m in r.asset_materializations_for_node("candles_1m")
        ]
        lines += [
            f"backfilled {', '.join(symbols)} for {days[0]}..{days[-1]} from the emulator "
            f"({emulator.rest_url}, {len(withheld)} minutes of {symbols[0]} withheld): "
            f"{sum(m['rows_inserted'].value for m in metas):,} rows inserted, "
            f"{sum(m['rows_already_present'].value for m in metas):,} already present",
            _checks_line(backfill, symbols),
        ]
        faults.heal()
        repair = _candle_runs(ctx, resources, symbols[:1], days, repair=True)
        fixed = [m.metadata for m in repair[0].asset_materializations_for_node("candles_1m")]
        lines += [
            f"repair of {symbols[0]}: asked {sum(m['rest_ranges'].value for m in fixed)} "
            f"range(s), inserted {sum(m['rows_inserted'].value for m in fixed)} rows",
            _checks_line(repair, symbols[:1]),
        ]
    rollups = _rollup_selection(ctx)
    if rollups:
        ctx.materialize(rollups)
    counts = dict(
        asyncio.run(
            _market_counts(
                ctx.settings.database_url,
                market.exchange,
                symbols,
                today - timedelta(days=2),
                today,
            )
        )
    )
    lines.append(
        "rows per timeframe: "
        + ", ".join(f"{tf} {counts[tf]:,}" for tf in sort_timeframes(list(counts)))
    )
    lines.append("gap report (after repair):")
    report = asyncio.run(_gap_report(ctx.settings.database_url, market.exchange, symbols, days))
    lines += _table_lines(report, 2 * len(days) * len(symbols))
    return lines


async def _gap_report(url: str, exchange: str, symbols: list[str], days: list[str]) -> str:
    from datetime import date

    from ats_pipelines.warehouse.backfill import gap_reports
    from ats_pipelines.warehouse.reports import coverage_markdown

    async with connection(url) as conn:
        found = [
            ((symbol, day), report)
            for symbol in symbols
            for day, report in (
                await gap_reports(conn, exchange, symbol, [date.fromisoformat(d) for d in days])
            ).items()
        ]
    return coverage_markdown(found)


def _quality(ctx: DemoContext) -> list[str]:
    """Every quality check on the latest day of data; the report's path and its summary."""
    from ats_pipelines.emulator.server import EmulatorConfig
    from ats_pipelines.emulator.testing import emulator_in_thread
    from ats_pipelines.orchestration.resources.exchange import ExchangeResource

    market = ctx.universe
    assets = [
        a
        for a in ctx.defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("quality_report") in a.keys
    ]
    with emulator_in_thread(EmulatorConfig(birdeye=None)) as emulator:  # REST for reconciliation
        resources = {
            **(ctx.defs.resources or {}),
            "exchange": ExchangeResource(exchange_id=market.exchange, rest_url=emulator.rest_url),
        }
        result = _materialize(assets, instance=ctx.instance, resources=resources)
    meta = {
        k: v.value
        for k, v in result.asset_materializations_for_node("quality_report")[0].metadata.items()
    }
    failing = [str(name) for name in meta["failing_checks"] or []]  # type: ignore[union-attr]
    checks, failed = int(meta["checks"]), int(meta["failing"])  # type: ignore[arg-type]
    lines = [
        f"report: {meta['report']}",
        f"data docs: {meta.get('data_docs', '-')}",
        f"window: {meta['window']}",
        f"{checks - failed} of {checks} checks passing"
        + (f"; failing: {', '.join(failing)}" if failing else ""),
    ]
    lines += _table_lines(str(meta["summary"]), checks)
    return lines


def _demo_scope() -> ScopeConfig:
    """The ``demo`` scope: the synthetic planted-signal stand-in, hourly, three symbols."""
    from ats_pipelines.orchestration.resources.models import ScopeConfig

    return ScopeConfig(
        source="synthetic:planted",
        exchange="synthetic",
        timeframe="1h",
        symbols=["DEMO1/USDT", "DEMO2/USDT", "DEMO3/USDT"],
        horizon=6,
        risk=0.01,
        reward=1.0,
        momentum_feature="momentum",
        volatility_feature="f05",
        feature_service="synthetic",
    )


def _model_lines(meta: Any) -> list[str]:
    """The trained model's summary from the ``lgbm_model`` materialisation's metadata."""
    return [
        f"model {meta['model_id'].value}: {meta['trials'].value} trials "
        f"({meta['pruned_trials'].value} pruned) on "
        f"{meta['train_rows'].value:,} rows",
        f"holdout log-loss {meta['holdout_log_loss'].value:.4f} (prior "
        f"{meta['prior_log_loss'].value:.4f}, momentum "
        f"{meta['momentum_log_loss'].value:.4f}), AUC "
        f"{meta['holdout_auc'].value:.3f}",
        f"signals {meta['signals'].value:,}: hit rate "
        f"{meta['hit_rate'].value:.1%}, mean realised R "
        f"{meta['mean_realized_rr'].value:+.3f}",
        f"report: {meta['report_html'].value}",
    ]


def _train_queued(ctx: DemoContext, resources: dict[str, Any], request_id: int) -> list[str]:
    """Tick the queue sensor and run what it requests until ``request_id`` is done."""
    from ats_pipelines.defs.training import sensors
    from ats_pipelines.training import queue

    db = resources["timescale"]
    lines: list[str] = []
    keys = {dg.AssetKey("lgbm_model"), dg.AssetKey("champion_model")}
    assets: list[Any] = [
        a for a in ctx.defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.keys & keys
    ]
    assets += [
        c
        for c in ctx.defs.asset_checks or []
        if any(k.asset_key == dg.AssetKey("lgbm_model") for k in c.check_keys)
    ]
    for _ in range(5):  # the sensor takes requests in priority order; ours is most urgent
        with dg.build_sensor_context(
            instance=ctx.instance, resources=resources, sensor_name="retrain_queue_sensor"
        ) as context:
            tick = sensors.retrain_queue_sensor(context)
        for run_request in tick.run_requests or []:  # type: ignore[union-attr]
            run = _materialize(
                assets,
                instance=ctx.instance,
                resources=resources,
                selection=dg.AssetSelection.assets(*keys),
                run_config=run_request.run_config,
                tags=run_request.tags,
                raise_on_error=False,
            )
            checks = ", ".join(
                f"{e.check_name} {'passed' if e.passed else 'FAILED'}"
                for e in run.get_asset_check_evaluations()
            )
            lines.append(
                f"sensor: request {run_request.tags[sensors.QUEUE_TAG]} -> run "
                f"{run.run_id[:8]} (run key {run_request.run_key}); checks: {checks}"
            )
            if run_request.tags[sensors.QUEUE_TAG] == str(request_id):
                meta = run.asset_materializations_for_node("lgbm_model")[0].metadata
                lines += _model_lines(meta)
        done = db.run(lambda c: queue.get(c, request_id))
        if done is not None and done.status in ("completed", "failed"):
            break
    else:
        raise RuntimeError(f"demo step failed: request {request_id} was never trained")
    if done.status == "failed":
        raise RuntimeError(f"demo step failed: training failed: {done.error_message}")
    return lines


def _training(ctx: DemoContext) -> list[str]:
    """A retrain request claimed by the queue sensor and trained with a small trial budget,
    promoted through the blocking checks, then predictions and the model report's summary.

    The ``demo`` scope trains on the synthetic planted-signal stand-in: the emulator's random
    walk holds nothing learnable, so a model of it would (rightly) never pass the gates.
    """
    from ats_pipelines.training import queue, registry

    demo_scope = _demo_scope()
    project: dict[str, Any] = dict(ctx.defs.resources or {})
    base = project["models"]
    models = base.with_overrides(
        n_trials=6,
        max_rounds=150,
        max_concurrent_runs=100,
        scopes={**base.model_dump()["scopes"], "demo": demo_scope},
    )
    resources = {**project, "models": models}
    db = resources["timescale"]
    db.run(lambda c: registry.retire_champion(c, "demo", "make demo starts its scope afresh"))
    request = db.run(
        lambda c: queue.enqueue(
            c,
            scope="demo",
            reason="make demo",
            priority=1,
            requested_by="demo",
            config={"n_trials": 6},
        )
    )
    lines = [f"enqueued retrain request {request.id} (scope demo, priority 1, 6 trials)"]
    lines += _train_queued(ctx, resources, request.id)
    champion = db.run(lambda c: registry.champion(c, "demo"))
    if champion is None:
        raise RuntimeError("demo step failed: the demo model was not promoted")
    lines.append(f"promoted {champion.model_id} to champion of scope demo")
    predictions = [
        a
        for a in ctx.defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("predictions") in a.keys
    ]
    scored = _materialize(
        predictions,
        instance=ctx.instance,
        resources={**resources, "models": models.with_overrides(scopes={"demo": demo_scope})},
    )
    meta = scored.asset_materializations_for_node("predictions")[0].metadata
    lines.append(
        f"predictions: {meta['rows'].value} rows, {meta['inserted'].value} new in signals.signals:"
    )
    return lines + _table_lines(str(meta["preview"].value), 3)


def _features(ctx: DemoContext) -> list[str]:
    """The demo's days in the Parquet lake, features of every timeframe family and labels,
    Feast applied and materialised; a sample of point-in-time and online features."""
    import pandas as pd

    from ats_pipelines.features import catalog as cat

    market = ctx.universe
    symbols = list(market.symbols[:2])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [(today - timedelta(days=n)).date().isoformat() for n in (2, 1)]
    names = [
        "market_parquet",
        *(f"features_{tf}" for tf in cat.HIGHER_TIMEFRAMES),
        cat.BASE_FAMILY.name,
        "labels_1m",
    ]
    keys = [dg.AssetKey(n) for n in names]
    assets = [
        a
        for a in ctx.defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and set(a.keys) & set(keys)
    ]
    totals = dict.fromkeys(names, 0)
    for symbol in symbols:  # one ranged run per symbol over both days
        result = _materialize(
            assets,
            instance=ctx.instance,
            resources=ctx.defs.resources,
            selection=keys,
            tags={
                "dagster/asset_partition_range_start": f"{days[0]}|{symbol}",
                "dagster/asset_partition_range_end": f"{days[-1]}|{symbol}",
            },
        )
        if not result.success:
            raise RuntimeError(f"demo step failed: features of {symbol}")
        for name in names:
            meta = result.asset_materializations_for_node(name)[0].metadata
            key = "files_written" if name == "market_parquet" else "rows"
            totals[name] += int(meta[key].value)  # type: ignore[arg-type]
    lines = [
        f"lake {ctx.settings.lake_dir}: {totals['market_parquet']} files exported "
        f"({', '.join(symbols)}, {days[0]}..{days[-1]})",
        "feature rows: "
        + ", ".join(f"{n} {totals[n]:,}" for n in names[1:-1])
        + f"; labels_1m {totals['labels_1m']:,}",
    ]
    applied = ctx.materialize("key:feast_registry or key:feast_online_store")
    meta = applied.asset_materializations_for_node("feast_registry")[0].metadata
    lines.append(
        f"feast apply: {len(meta['applied'].value)} objects written "  # type: ignore[arg-type]
        f"({meta['unchanged'].value} unchanged); online store materialised"
    )
    store = ctx.defs.resources["feast"].store()  # type: ignore[index]
    shown = ["ret_1", "rsi_14", "macd_hist", "tf1h_rsi_14", "tf4h_ret_1"]
    refs = [f"{cat.BASE_FAMILY.name}:{f}" for f in shown]
    entity = pd.DataFrame(
        [
            {
                "symbol": s,
                "exchange": market.exchange,
                "event_timestamp": today - timedelta(minutes=m),
            }
            for s in symbols
            for m in (61, 1)
        ]
    )
    history = store.get_historical_features(entity_df=entity, features=refs).to_df()
    lines.append("historical (point in time, signals_v1 columns):")
    lines += ["  " + line for line in history.round(5).to_string(index=False).splitlines()]
    online = store.get_online_features(
        features=refs, entity_rows=[{"symbol": s, "exchange": market.exchange} for s in symbols]
    ).to_df()[["symbol", "exchange", *shown]]
    lines.append("online (latest):")
    lines += ["  " + line for line in online.round(5).to_string(index=False).splitlines()]
    return lines


STEPS: list[DemoStep] = [
    DemoStep("platform", _platform),
    DemoStep("market data", _market_data),
    DemoStep("data quality", _quality),
    DemoStep("features", _features),
    DemoStep("training", _training),
]


def _streaming(ctx: DemoContext) -> list[str]:
    """The streaming job through Dagster for a few seconds against the emulator at 60x speed
    (a minute of bars every wall second), stored under its own exchange name."""
    from ats_pipelines.defs.streaming.jobs import streaming_service_job
    from ats_pipelines.emulator.server import EmulatorConfig
    from ats_pipelines.emulator.testing import emulator_in_thread
    from ats_pipelines.orchestration.resources.exchange import ExchangeResource

    start = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)  # in the past
    symbols = ["BTC/USDT", "ETH/USDT"]
    config = {
        "ops": {
            "run_stream_service": {
                "config": {
                    "symbols": symbols,
                    "store_as": "demo_stream",
                    "duration_s": 8.0,
                    "heal_interval_s": 2.0,
                }
            }
        }
    }
    with emulator_in_thread(EmulatorConfig(birdeye=None, speed=60.0, start_ms=start)) as emulator:
        resources = {
            **(ctx.defs.resources or {}),
            "exchange": ExchangeResource(rest_url=emulator.rest_url),
        }
        result = streaming_service_job.execute_in_process(
            run_config=_console(config), instance=ctx.instance, resources=resources
        )
    summary = result.output_for_node("run_stream_service")
    latency = summary["latency"].get("closed_to_committed", {})
    return [
        f"streamed {', '.join(symbols)} for 8 s at 60x: {summary['trades']['applied']} "
        f"trades, {summary['lanes']['bars']['committed_rows']} bar rows (6 timeframes) "
        f"committed, bar close -> commit p99 {latency.get('p99_ms', 'n/a')} ms; "
        "rows under exchange 'demo_stream'"
    ]


STEPS.append(DemoStep("streaming", _streaming))
# Later steps go before this one: it shows the signals of the bars the steps above stored.
STEPS.append(DemoStep("signals", _signals))


async def _inventory(url: str) -> str:
    async with connection(url) as conn:
        return markdown_table(await table_summaries(conn))


def demo_instance(settings: Settings) -> dg.DagsterInstance:
    from ats_pipelines.cli.dagster_cmd import dagster_home, dagster_storage_url

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home(settings)))
    os.environ["ATS_DAGSTER_PG_URL"] = dagster_storage_url(settings)
    return dg.DagsterInstance.get()


def run_demo(settings: Settings, echo: Callable[[str], None]) -> None:
    from ats_pipelines.definitions import defs

    with demo_instance(settings) as instance:
        ctx = DemoContext(settings=settings, defs=defs(), instance=instance)
        for step in STEPS:
            echo(f"== {step.name}")
            for line in step.run(ctx):
                echo(f"   {line}")
    echo("== tables")
    echo(asyncio.run(_inventory(settings.database_url)))
