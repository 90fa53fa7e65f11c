"""Sensors of the signals domain: new closed bars → analyzer runs (one sensor per timeframe),
new detected signals → coordinator runs. No schedules: the sensors' interval is the only polling.

Exactly once: a sensor's cursor remembers what it has requested and every request carries a run
key naming its work (``analyzer:<id>:<exchange>:<symbol>:<tf>:<newest bar>``), which the daemon
never launches twice; the database watermarks make a run that finds nothing new a no-op. A run
that fails is requested again when the next bar arrives (or by hand).
"""

import json
from datetime import datetime

import asyncpg
import dagster as dg

from ats_pipelines.defs.signals.assets import analyzer_run_config
from ats_pipelines.defs.signals.jobs import COORDINATION, TREND_ANALYSIS
from ats_pipelines.orchestration.jobs import JobLike
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.analyzer import PendingAnalysis, pending_analyses
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.coordinator import Backlog, backlog

STOPPED = dg.DefaultSensorStatus.STOPPED


def analyzer_sensor_name(timeframe: str) -> str:
    return f"trend_analyzer_{timeframe}_sensor"


def build_analyzer_sensor(
    settings: SignalsSettings, timeframe: str, job: JobLike
) -> dg.SensorDefinition:
    @dg.sensor(
        name=analyzer_sensor_name(timeframe),
        job=job,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=STOPPED,
        description=f"Requests one trend-analyzer run per symbol with {timeframe} bars closed "
        "after its watermark.",
    )
    def analyzer_sensor(
        context: dg.SensorEvaluationContext, timescale: TimescaleResource
    ) -> dg.SensorResult:
        """New closed bars of this timeframe → an analyzer run per symbol."""

        async def body(conn: asyncpg.Connection) -> list[PendingAnalysis]:
            return await pending_analyses(conn, settings, timeframe)

        requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        requests = []
        for work in timescale.run(body):
            key = f"{work.target.exchange}|{work.target.symbol}"
            seen = requested.get(key)
            if seen is not None and datetime.fromisoformat(seen) >= work.newest:
                continue
            requested[key] = work.newest.isoformat()
            requests.append(
                dg.RunRequest(
                    run_key=work.run_key,
                    run_config=analyzer_run_config(work.target.symbol, timeframe),
                    tags={
                        "signals/analyzer": work.target.analyzer_id,
                        "signals/symbol": work.target.symbol,
                        "signals/timeframe": timeframe,
                        "signals/newest_bar": work.newest.isoformat(),
                    },
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(requested, sort_keys=True))

    return analyzer_sensor


def build_coordinator_sensor(settings: SignalsSettings, job: JobLike) -> dg.SensorDefinition:
    rules = settings.coordinator

    @dg.sensor(
        name="signal_coordinator_sensor",
        job=job,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=STOPPED,
        description="Requests a coordinator run when detected signals after its watermark have "
        "become decidable.",
    )
    def signal_coordinator_sensor(
        context: dg.SensorEvaluationContext, timescale: TimescaleResource
    ) -> dg.SensorResult:
        """New decidable signals → one coordinator run."""

        async def body(conn: asyncpg.Connection) -> Backlog:
            return await backlog(conn, settings.analyzer_id, rules)

        state = timescale.run(body)
        if state.decidable == 0:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"nothing decidable after signal {state.last_signal_id} "
                    f"({state.waiting} waiting for their timeframes to be final)"
                )
            )
        key = state.run_key(rules.coordinator_id)
        if context.cursor == key:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"already requested {key}"))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=key,
                    tags={
                        "signals/coordinator": rules.coordinator_id,
                        "signals/after_signal_id": str(state.last_signal_id),
                    },
                )
            ],
            cursor=key,
        )

    return signal_coordinator_sensor


def build_signal_sensors(
    settings: SignalsSettings, jobs: dict[str, JobLike]
) -> list[dg.SensorDefinition]:
    return [
        *(build_analyzer_sensor(settings, tf, jobs[TREND_ANALYSIS]) for tf in settings.timeframes),
        build_coordinator_sensor(settings, jobs[COORDINATION]),
    ]
