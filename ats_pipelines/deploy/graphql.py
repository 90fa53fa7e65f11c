"""A small client of the Dagster webserver's GraphQL API: launch, find, watch and terminate runs.

GraphQL is the webserver's public interface (the UI uses nothing else); the queries here are
the few the production layout needs, so ``ats prod`` and its test drive Dagster the way an
operator's tooling would.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

REPOSITORY = "__repository__"  # the name Dagster gives a code location's Definitions
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
IN_PROGRESS = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}"""
LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""
RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { configuredValues { key value } }
    ... on Error { message }
  }
}"""
TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on Error { message } }
}"""


class GraphQLError(RuntimeError):
    """The webserver refused or failed a request; the message says which and why."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    job: str
    tags: dict[str, str]


class DagsterWebClient:
    """GraphQL over HTTP to ``http://host:port/graphql``."""

    def __init__(self, port: int, host: str = "127.0.0.1", location: str = "ats_pipelines"):
        self.url = f"http://{host}:{port}/graphql"
        self.location = location

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                doc = json.loads(response.read())
        except OSError as exc:
            raise GraphQLError(f"Dagster webserver at {self.url} unreachable: {exc}") from exc
        if doc.get("errors"):
            raise GraphQLError(f"{self.url}: {doc['errors'][0].get('message')}")
        return doc["data"]

    def launch(
        self, job: str, run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """Submit a run of ``job`` (queued by the run coordinator); returns its run id."""
        params = {
            "selector": {
                "repositoryLocationName": self.location,
                "repositoryName": REPOSITORY,
                "jobName": job,
            },
            "runConfigData": run_config or {},
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        }
        result = self._post(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("message") or "; ".join(e["message"] for e in result["errors"])
            raise GraphQLError(f"launching {job}: {result['__typename']}: {detail}")
        return result["run"]["runId"]

    def runs(
        self, tags: dict[str, str] | None = None, statuses: list[str] | None = None
    ) -> list[RunInfo]:
        run_filter: dict[str, Any] = {}
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if statuses:
            run_filter["statuses"] = statuses
        result = self._post(RUNS, {"filter": run_filter})["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(f"listing runs: {result['__typename']}")
        return [
            RunInfo(
                r["runId"], r["status"], r["jobName"], {t["key"]: t["value"] for t in r["tags"]}
            )
            for r in result["results"]
        ]

    def status(self, run_id: str) -> str:
        found = [r for r in self.runs() if r.run_id == run_id]
        if not found:
            raise GraphQLError(f"run {run_id} not found")
        return found[0].status

    def wait(self, run_id: str, statuses: set[str], timeout_s: float) -> str:
        """Poll until the run's status is one of ``statuses``; returns it."""
        deadline = time.monotonic() + timeout_s
        status = self.status(run_id)
        while status not in statuses:
            if time.monotonic() > deadline:
                raise GraphQLError(f"run {run_id} still {status} after {timeout_s:.0f} s")
            time.sleep(0.5)
            status = self.status(run_id)
        return status

    def worker_pid(self, run_id: str) -> int | None:
        """PID of the run's worker process, from its 'Started process for run (pid: N)' event."""
        result = self._post(LOGS, {"runId": run_id})["logsForRun"]
        for event in result.get("events", []):
            found = re.search(r"Started process for run \(pid: (\d+)\)", event.get("message", ""))
            if found:
                return int(found.group(1))
        return None

    def messages(self, run_id: str) -> list[str]:
        """The run's log messages, in order (what the UI's run page lists)."""
        result = self._post(LOGS, {"runId": run_id})["logsForRun"]
        return [e["message"] for e in result.get("events", []) if e.get("message")]

    def resource_config(self, name: str) -> dict[str, str]:
        """A top-level resource's configured values as the UI shows them (JSON-encoded)."""
        selector = {
            "repositoryLocationName": self.location,
            "repositoryName": REPOSITORY,
            "resourceName": name,
        }
        result = self._post(RESOURCE, {"selector": selector})["topLevelResourceDetailsOrError"]
        if result["__typename"] != "ResourceDetails":
            raise GraphQLError(f"resource {name}: {result.get('message', result['__typename'])}")
        return {v["key"]: v["value"] for v in result["configuredValues"]}

    def terminate(self, run_id: str) -> None:
        result = self._post(TERMINATE, {"runId": run_id})["terminateRun"]
        if result["__typename"] != "TerminateRunSuccess":
            raise GraphQLError(f"terminating {run_id}: {result.get('message', result)}")
