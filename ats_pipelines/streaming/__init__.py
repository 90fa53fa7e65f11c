"""The streaming service (``ats stream``): websocket trades and order books -> multi-timeframe
bars, book metrics and snapshots in TimescaleDB and the Redis hot cache. No Dagster here;
``ats_pipelines.defs.streaming`` runs :class:`~ats_pipelines.streaming.service.StreamService`
as a long-running job and watches its heartbeats.

Modules: ``config`` (what to stream), ``service`` (start, shutdown; it owns the parts
below), ``supervisor`` (every long-lived task restarted on errors and stalls), ``loops`` (the
trade and book watchers, the clock tick), ``symbols`` (per-symbol state), ``intake`` (trades
in, with the service's bookkeeping), ``gapfill`` (missing trade ids over REST), ``verify``
(stored trades and bars against the emulator's market, for tests and benchmarks),
``emitter`` (bars, trades and snapshots to the writer lanes and the hot cache; commit listeners
with the typed metadata of ``commits``), ``recovery`` (what a reconnect or resume missed,
fetched over REST), ``upkeep`` (checkpoints, heartbeat, stats, the healing loop), ``ingest``
(trades into the aggregator, trade-id tracking), ``orderbook`` (book metrics, sampled
snapshots), ``writer`` (bounded queues, batched writes, spill files), ``committer`` (the bar
lane's own thread), ``runtime`` (GC pacing and the interpreter settings while streaming),
``heal`` (REST klines vs stored bars), ``state`` (open bars saved and resumed), ``hotcache``,
``metrics``, ``health``.
"""
