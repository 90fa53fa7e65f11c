"""The live signal service as a Dagster job, and the check that says whether it runs.

``signal_service_job`` runs :class:`~ats_pipelines.signals.live.SignalService` (``ats signals
run``) until the run is terminated, like the streaming job: terminating delivers SIGTERM to the
run worker, the service stops its tasks and the run ends interrupted; a dead worker is
relaunched by Dagster's run retries and catches up from the watermarks. The sensors and
``signal_replay_job`` stay: catch-up, backfill, replay, and the safety net while it is down.

``signal_service_fresh`` (on ``detected_signals``) fails when no service beat recently
(``signals.service_heartbeats``); ``signal_service_freshness_sensor`` records it when it changes.
"""

import asyncio
import json
import time
from datetime import timedelta

import dagster as dg

from ats_pipelines.config import ConfigError, load_settings
from ats_pipelines.db.connect import DatabaseUnavailable
from ats_pipelines.defs.signals.assets import DETECTED
from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.signals.config import SignalsSettings
from ats_pipelines.signals.heartbeat import ServiceFreshness, read_beats, service_freshness
from ats_pipelines.signals.live import LiveConfig, SignalService, SignalServiceError

SERVICE_JOB = "signal_service_job"
FRESHNESS_CHECK = "signal_service_fresh"
FRESHNESS_SENSOR = "signal_service_freshness_sensor"
SERVICE_RUN_RETRIES = 1000  # a long-running service: effectively "always restart"
REASSERT_S = 600


class SignalServiceRunConfig(dg.Config):
    """How this run's service is named and paced (the settings come from the environment)."""

    service_id: str = "signals"
    sweep_interval_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    events: bool = True  # read bar events from the platform's Redis (ATS_REDIS_URL / managed)
    redis_url: str | None = None  # another Redis than the platform's
    metrics_port: int | None = None  # Prometheus /metrics on 127.0.0.1; None: off
    duration_s: float | None = None  # None: until the run is terminated


def build_service_job(settings: SignalsSettings) -> dg.JobDefinition:
    @dg.op(name="run_signal_service", description="Runs the live signal service until terminated.")
    def run_signal_service(
        context: dg.OpExecutionContext,
        config: SignalServiceRunConfig,
        timescale: TimescaleResource,
    ) -> dg.Output[dict]:
        """Analyses each bar as its commit event arrives; coordinates; beats."""
        try:
            redis_url = (config.redis_url or load_settings().redis_url) if config.events else None
            live = LiveConfig(
                database_url=timescale.database_url,
                redis_url=redis_url,
                service_id=config.service_id,
                sweep_interval_s=config.sweep_interval_s,
                heartbeat_interval_s=config.heartbeat_interval_s,
                metrics_port=config.metrics_port,
                duration_s=config.duration_s,
            )
        except ConfigError as exc:
            raise dg.Failure(str(exc)) from exc
        context.log.info(
            f"event=signal_service_run service={live.service_id} analyzer={settings.analyzer_id}"
            f" events={'on' if live.redis_url else 'off'} database={timescale.address}"
        )
        service = SignalService(settings, live, install_signal_handlers=True)
        try:
            summary = asyncio.run(service.run())
        except SignalServiceError as exc:
            raise dg.Failure(str(exc)) from exc
        if service.stop_reason in ("SIGINT", "SIGTERM"):
            raise dg.DagsterExecutionInterruptedError(
                f"signal service run terminated ({service.stop_reason})"
            )
        return dg.Output(
            summary,
            metadata={
                "service_id": live.service_id,
                "events": summary["events"],
                "analyzer_runs": summary["runs"],
                "signals_written": summary["signals"],
                "decisions_written": summary["decisions"],
                "latency": dg.MetadataValue.json(summary["latency"]),
            },
        )

    @dg.job(
        name=SERVICE_JOB,
        description="The live signal service (`ats signals run`) as a long-running run: bar "
        "events -> analyzers -> coordinator, until terminated.",
        executor_def=dg.in_process_executor,
        tags={
            "ats/long_running": "true",
            "ats/domain": "signals",
            "dagster/max_retries": str(SERVICE_RUN_RETRIES),
            "dagster/retry_on_asset_or_op_failure": "false",
            "dagster/retry_strategy": "ALL_STEPS",
        },
    )
    def signal_service_job() -> None:
        run_signal_service()

    return signal_service_job


def freshness_metadata(verdict: ServiceFreshness) -> dict[str, dg.MetadataValue]:
    return {
        "summary": dg.MetadataValue.text(verdict.summary),
        "stale_services": dg.MetadataValue.json(verdict.stale),
        "beat_ages_s": dg.MetadataValue.json(verdict.ages_s),
    }


def build_freshness(
    settings: SignalsSettings, max_age: timedelta = timedelta(seconds=60)
) -> tuple[dg.AssetChecksDefinition, dg.SensorDefinition]:
    def verdict(timescale: TimescaleResource) -> ServiceFreshness:
        beats = timescale.run(read_beats)
        return service_freshness(beats, max_age=max_age, analyzer_id=settings.analyzer_id)

    @dg.asset_check(
        asset=DETECTED,
        name=FRESHNESS_CHECK,
        description="A live signal service of this analyzer beat within the last "
        f"{max_age.total_seconds():.0f}s (signals.service_heartbeats); stale or none -> failed.",
    )
    def signal_service_fresh(timescale: TimescaleResource) -> dg.AssetCheckResult:
        """Fails when the live signal service's heartbeat is stale or absent."""
        v = verdict(timescale)
        return dg.AssetCheckResult(
            passed=v.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=v.summary,
            metadata=freshness_metadata(v),
        )

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Turns signals.service_heartbeats into the signal_service_fresh status.",
    )
    def signal_service_freshness_sensor(
        context: dg.SensorEvaluationContext, timescale: TimescaleResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Records a signal_service_fresh evaluation whenever the verdict changes."""
        try:
            v = verdict(timescale)
        except DatabaseUnavailable as exc:
            return dg.SkipReason(f"database unavailable: {exc}")
        previous = json.loads(context.cursor) if context.cursor else {}
        state = {"passed": v.passed, "stale": v.stale}
        now = time.time()
        if previous.get("state") == state and now - previous.get("at", 0) < REASSERT_S:
            return dg.SensorResult(cursor=json.dumps(previous), skip_reason=v.summary)
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(DETECTED),
            check_name=FRESHNESS_CHECK,
            passed=v.passed,
            metadata=freshness_metadata(v),
            severity=dg.AssetCheckSeverity.ERROR,
            description=v.summary,
        )
        context.log.info(f"event=signal_service_freshness passed={v.passed} {v.summary}")
        return dg.SensorResult(
            asset_events=[evaluation], cursor=json.dumps({"state": state, "at": now})
        )

    return signal_service_fresh, signal_service_freshness_sensor
