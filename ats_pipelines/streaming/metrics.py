"""Latency and health metrics of one streaming process, and its Prometheus endpoint.

Hops (histograms ``ats_stream_latency_seconds{hop=...}``):

* ``exchange_to_received`` — per trade: local receive time minus the trade's exchange time
  (meaningful when both clocks agree, i.e. a real exchange or an emulator at speed 1);
* ``received_to_closed`` — per bar: from receiving the message that finalised it (a trade of
  a later bucket past the grace, or the clock tick) to the bar leaving the aggregator;
* ``closed_to_committed`` — per bar: from leaving the aggregator to its database commit;
* ``final_to_committed`` — per bar, end to end: commit time minus the moment the bar became
  final in exchange time (bucket end + grace), on the exchange clock estimate.

Each hop also keeps its recent samples (:class:`Recent`) so heartbeats and the benchmark can
report exact p50/p99 without scraping. The endpoint binds to 127.0.0.1 only.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

HOPS = ("exchange_to_received", "received_to_closed", "closed_to_committed", "final_to_committed")
BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class Recent:
    """The last ``size`` samples of one hop (seconds), for exact percentiles."""

    def __init__(self, size: int = 100_000) -> None:
        self.samples: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.count += 1

    def percentiles(self, *qs: float) -> list[float | None]:
        if not self.samples:
            return [None for _ in qs]
        values = np.fromiter(self.samples, dtype=float, count=len(self.samples))
        return [float(v) for v in np.percentile(values, qs)]


class StreamMetrics:
    """Every metric of one process, in its own registry (several services can share a process
    in tests)."""

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "ats_stream_latency_seconds", "Per-hop latency", ["hop"], buckets=BUCKETS, registry=r
        )
        self._hop = {hop: self.latency.labels(hop=hop) for hop in HOPS}
        # per-trade samples are many: the last 20,000 give a p99 of the last seconds, and the
        # heartbeat's percentiles over them stay a millisecond of the loop, not tens
        self.recent = {
            hop: Recent(20_000 if hop == "exchange_to_received" else 100_000) for hop in HOPS
        }
        self._receive = self._hop["exchange_to_received"]
        self._bounds = np.array([*BUCKETS, float("inf")])
        self._receive_recent = self.recent["exchange_to_received"].samples
        self.trades = Counter("ats_stream_trades", "Trades by outcome", ["status"], registry=r)
        self.bars = Counter("ats_stream_bars", "Final bars emitted", ["timeframe"], registry=r)
        self.rows_written = Counter(
            "ats_stream_rows_written", "Rows committed", ["table"], registry=r
        )
        self.reconnects = Counter(
            "ats_stream_reconnects", "Websocket reconnects", ["stream"], registry=r
        )
        self.book_resyncs = Counter(
            "ats_stream_book_resyncs", "Order books resynchronised after a sequence gap", registry=r
        )
        self.backfilled = Counter(
            "ats_stream_backfilled_trades",
            "Trades fetched from REST to fill a gap in trade ids",
            registry=r,
        )
        self.heal_rows = Counter(
            "ats_stream_heal_rows", "Bars written by gap healing", ["action"], registry=r
        )
        self.task_failures = Counter(
            "ats_stream_task_failures",
            "Supervised tasks that failed or stalled and were restarted, by kind and error",
            ["task", "error"],
            registry=r,
        )
        self.db_errors = Counter(
            "ats_stream_db_errors", "Failed database writes", ["lane"], registry=r
        )
        self.spilled = Counter(
            "ats_stream_spilled_batches", "Batches spilled to local files", ["lane"], registry=r
        )
        self.queue_depth = Gauge(
            "ats_stream_queue_depth", "Items waiting in a lane's queue", ["lane"], registry=r
        )
        self.pending_rows = Gauge(
            "ats_stream_pending_rows",
            "Rows accepted but not committed (memory)",
            ["lane"],
            registry=r,
        )
        self.db_up = Gauge(
            "ats_stream_db_up", "1 when the lane's last write succeeded", ["lane"], registry=r
        )
        self.last_trade_ts = Gauge(
            "ats_stream_last_trade_timestamp_seconds",
            "Exchange time of the latest applied trade",
            ["symbol"],
            registry=r,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def observe(self, hop: str, seconds: float) -> None:
        self._hop[hop].observe(seconds)
        self.recent[hop].add(seconds)

    def receive_latencies(self, seconds: list[float]) -> None:
        """``exchange_to_received`` for the trades of one message at once (the per-trade hot
        path: one ``Histogram.observe`` per trade was 3 % of the service's CPU at 10k/s)."""
        n = len(seconds)
        if n < 8:
            for value in seconds:
                self._receive.observe(value)
        else:
            values = np.asarray(seconds, dtype=float)
            counts = np.bincount(np.searchsorted(self._bounds, values), minlength=len(self._bounds))
            # the child's own per-bucket counters (what ``observe`` increments one at a time)
            buckets = self._receive._buckets  # pyright: ignore[reportAttributeAccessIssue]
            for i in np.flatnonzero(counts).tolist():
                buckets[i].inc(int(counts[i]))
            self._receive._sum.inc(float(values.sum()))  # pyright: ignore[reportAttributeAccessIssue]
        self._receive_recent.extend(seconds)
        self.recent["exchange_to_received"].count += n

    def summary(self) -> dict[str, Any]:
        """p50/p99 (ms) per hop over recent samples, for heartbeats and logs."""
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
        """Start ``/metrics`` on 127.0.0.1:``port`` (0: any free port); returns the port."""
        server, thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
