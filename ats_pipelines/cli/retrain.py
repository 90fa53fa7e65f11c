"""`ats retrain …`: put a retrain request on the queue, list requests.

The queue sensor (``retrain_queue_sensor`` in Dagster) claims requests and launches the runs;
this command only enqueues (a second request for a scope with one pending coalesces into it).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ats_pipelines.cli.common import fail, run
from ats_pipelines.config import load_settings
from ats_pipelines.db.connect import connection
from ats_pipelines.training import queue

app = typer.Typer(help="The retrain queue: request a retrain, list requests.", no_args_is_help=True)


@app.command()
def enqueue(
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why retrain (kept on the row).")],
    priority: Annotated[
        int, typer.Option("--priority", "-p", min=1, max=5, help="1 most urgent .. 5 least.")
    ] = 3,
    scope: Annotated[str, typer.Option("--scope", "-s", help="Model scope.")] = "default",
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Optuna trials for this request.")
    ] = None,
    requested_by: Annotated[str, typer.Option("--by", help="Who asks.")] = "cli",
) -> None:
    """Request a retrain of a model scope."""
    settings = run(load_settings)

    async def body() -> queue.Enqueued:
        async with connection(settings.database_url) as conn:
            return await queue.enqueue(
                conn,
                reason=reason,
                priority=priority,
                scope=scope,
                requested_by=requested_by,
                config={"n_trials": trials} if trials else None,
            )

    try:
        result = run(body)
    except queue.QueueError as exc:
        fail(str(exc))
    verb = "coalesced into pending request" if result.coalesced else "queued request"
    typer.echo(f"{verb} {result.id} (scope {scope}, priority {result.priority})")


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="pending, processing, completed, failed.")
    ] = None,
    scope: Annotated[str | None, typer.Option(help="Only this model scope.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List retrain requests, newest first."""
    settings = run(load_settings)

    async def body() -> list[queue.QueueItem]:
        async with connection(settings.database_url) as conn:
            return await queue.list_requests(conn, status=status, scope=scope, limit=limit)

    try:
        items = run(body)
    except queue.QueueError as exc:
        fail(str(exc))
    if as_json:
        for item in items:
            typer.echo(
                json.dumps(
                    {
                        **item.__dict__,
                        **{
                            k: getattr(item, k).isoformat() if getattr(item, k) else None
                            for k in ("inserted_at", "started_at", "completed_at", "heartbeat_at")
                        },
                    }
                )
            )
        return
    if not items:
        typer.echo("no retrain requests")
        return
    typer.echo(f"{'id':>6}  {'status':<10} {'p':>1}  {'scope':<16} {'inserted':<19}  reason")
    for i in items:
        line = (
            f"{i.id:>6}  {i.status:<10} {i.priority:>1}  {i.scope[:16]:<16} "
            f"{i.inserted_at:%Y-%m-%d %H:%M:%S}  {i.reason}"
        )
        if i.error_message and i.status == "failed":
            line += f"\n{'':>8}error: {i.error_message}"
        typer.echo(line)
