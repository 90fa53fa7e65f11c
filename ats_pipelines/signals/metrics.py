"""Latency and counts of the live signal service, and its Prometheus endpoint (127.0.0.1).

Hops (histogram ``ats_signals_latency_seconds{hop=...}``; wall clocks of one machine):

* ``committed_to_received`` — the bar's commit (by the streaming service) to its event read,
  split in ``committed_to_sent`` (the streaming process: hand-off to the publisher's thread)
  and ``sent_to_received`` (Redis, and this process getting to read it);
* ``received_to_analyzed`` — event read to the analyzer's writes done (before the commit);
* ``analyzed_to_committed`` — the analyzer transaction's commit;
* ``signal_to_decision`` — a signal committed to the coordinator's decision on it committed;
* ``bar_to_analyzed`` — per event, the bar's commit to the analyzer's commit (signal or not);
* ``bar_to_signal`` and ``bar_to_decision`` — end to end, from the bar's commit.

Each hop also keeps its recent samples (``streaming.metrics.Recent``) for exact p50/p99 in the
heartbeat and the benchmark.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from ats_pipelines.streaming.metrics import BUCKETS, Recent

HOPS = (
    "committed_to_received",
    "committed_to_sent",
    "sent_to_received",
    "received_to_analyzed",
    "analyzed_to_committed",
    "signal_to_decision",
    "bar_to_analyzed",
    "bar_to_signal",
    "bar_to_decision",
)


class SignalMetrics:
    """Every metric of one signal service, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "ats_signals_latency_seconds",
            "Per-hop latency of the live signal path",
            ["hop"],
            buckets=BUCKETS,
            registry=r,
        )
        self._hop = {hop: self.latency.labels(hop=hop) for hop in HOPS}
        self.recent = {hop: Recent(100_000) for hop in HOPS}
        self.events = Counter(
            "ats_signals_bar_events", "Bar events read", ["timeframe"], registry=r
        )
        self.runs = Counter(
            "ats_signals_analyzer_runs", "Analyzer runs by trigger", ["trigger"], registry=r
        )
        self.signals = Counter(
            "ats_signals_written", "Detected signals written", ["timeframe"], registry=r
        )
        self.decisions = Counter("ats_signals_decisions", "Coordinator decisions", registry=r)
        self.task_failures = Counter(
            "ats_signals_task_failures",
            "Supervised tasks that failed and were restarted, by kind and error",
            ["task", "error"],
            registry=r,
        )
        self._server: Any = None
        self.port: int | None = None

    def observe(self, hop: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._hop[hop].observe(seconds)
        self.recent[hop].add(seconds)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for hop in HOPS:
            p50, p99 = self.recent[hop].percentiles(50, 99)
            if p50 is not None and p99 is not None:
                out[hop] = {
                    "p50_ms": round(p50 * 1000, 3),
                    "p99_ms": round(p99 * 1000, 3),
                    "n": self.recent[hop].count,
                }
        return out

    def serve(self, port: int) -> int:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
