"""`ats prod up | down | status`: the production layout on this machine, with health checks.

Up: the database (migrated), Dagster's storage and home, the hot cache; then the code server,
and once it answers, the webserver and the daemon; then one streaming run per shard, launched
through the webserver's GraphQL API and supervised by Dagster (a dead run worker fails its run,
run retries start a new one; dagster.yaml). Down: terminate the streaming runs (they flush and
save their open bars), then stop daemon, webserver and code server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ats_pipelines.config import Settings
from ats_pipelines.deploy.graphql import IN_PROGRESS, DagsterWebClient, GraphQLError
from ats_pipelines.deploy.layout import LOCATION, ROLES, process_env, spec
from ats_pipelines.deploy.supervisor import ProcessState, Supervisor

log = logging.getLogger(__name__)
STREAM_JOB = "streaming_service_job"
STREAM_DOMAIN = {"ats/domain": "streaming"}


def stream_tags(shard: str) -> dict[str, str]:
    return {"ats/stream_shard": shard}


def client(settings: Settings) -> DagsterWebClient:
    return DagsterWebClient(settings.webserver_port, location=LOCATION)


def start_processes(settings: Settings, say: Callable[[str], None], timeout_s: float) -> None:
    supervisor, env = Supervisor(settings), process_env(settings)
    code = spec(settings, "code-server")
    if supervisor.start(code, env):
        say(f"started code-server on {settings.code_server_host}:{settings.code_server_port}")
    supervisor.wait_healthy(code, env, timeout_s)
    rest = [spec(settings, role) for role in ROLES if role != "code-server"]
    for process in rest:
        if supervisor.start(process, env):
            say(f"started {process.role}")
    for process in rest:
        supervisor.wait_healthy(process, env, timeout_s)
    say(f"healthy: {', '.join(ROLES)}; UI on http://127.0.0.1:{settings.webserver_port}")


def start_streams(
    settings: Settings, shards: int, say: Callable[[str], None], timeout_s: float
) -> list[str]:
    """One streaming run per shard unless one is in progress; returns the run ids."""
    web, run_ids = client(settings), []
    for index in range(shards):
        shard = f"{index}/{shards}"
        running = web.runs(tags=stream_tags(shard), statuses=IN_PROGRESS)
        if running:
            say(f"stream {shard}: run {running[0].run_id} already {running[0].status.lower()}")
            run_ids.append(running[0].run_id)
            continue
        config = {"ops": {"run_stream_service": {"config": {"shard": shard}}}}
        run_id = web.launch(STREAM_JOB, config, stream_tags(shard))
        status = web.wait(run_id, {"STARTED", "FAILURE", "CANCELED"}, timeout_s)
        if status != "STARTED":
            raise GraphQLError(f"stream {shard}: run {run_id} ended {status} while starting")
        say(f"stream {shard}: run {run_id} started")
        run_ids.append(run_id)
    return run_ids


def stop_streams(settings: Settings, say: Callable[[str], None], timeout_s: float) -> None:
    web = client(settings)
    runs = web.runs(tags=STREAM_DOMAIN, statuses=IN_PROGRESS)
    for run in runs:
        web.terminate(run.run_id)
    for run in runs:
        status = web.wait(run.run_id, {"SUCCESS", "FAILURE", "CANCELED"}, timeout_s)
        say(f"stream {run.tags.get('ats/stream_shard', '?')}: run {run.run_id} {status.lower()}")


def stop_processes(settings: Settings, say: Callable[[str], None]) -> None:
    supervisor = Supervisor(settings)
    for role in reversed(ROLES):
        say(f"stopped {role}" if supervisor.stop(role) else f"{role} was not running")


def status(settings: Settings) -> tuple[list[ProcessState], list[str]]:
    """Each process's state, and a line per streaming run in progress."""
    supervisor, env = Supervisor(settings), process_env(settings)
    states = [supervisor.state(spec(settings, role), env) for role in ROLES]
    streams: list[str] = []
    if any(s.role == "webserver" and s.healthy for s in states):
        for run in client(settings).runs(tags=STREAM_DOMAIN, statuses=IN_PROGRESS):
            shard = run.tags.get("ats/stream_shard", "?")
            streams.append(f"stream {shard}: run {run.run_id} {run.status.lower()}")
    return states, streams
