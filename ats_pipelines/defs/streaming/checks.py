"""What the streaming service produces, and the freshness check that says whether it runs."""

import dagster as dg

from ats_pipelines.orchestration.resources.timescale import TimescaleResource
from ats_pipelines.streaming.health import Freshness, freshness, read_heartbeats

stream_bars = dg.AssetSpec(
    "stream_bars",
    group_name="streaming",
    description="Bars, trades and book snapshots the streaming service writes live "
    "(market.candles source 'stream'/'heal', market.trades, "
    "market.order_book_snapshots); runs as streaming_service_job or `ats stream`.",
    kinds={"timescaledb"},
)

FRESHNESS_CHECK = "stream_fresh"


def freshness_result(verdict: Freshness) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=FRESHNESS_CHECK,
        asset_key=stream_bars.key,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.summary,
        metadata=freshness_metadata(verdict),
    )


def freshness_metadata(verdict: Freshness) -> dict[str, dg.MetadataValue]:
    meta = verdict.metadata()
    rows = "\n".join(
        f"| {s.shard} | {'fresh' if s.fresh else 'STALE'} | {s.beat_age_s:.0f} | "
        f"{'' if s.trade_age_s is None else f'{s.trade_age_s:.0f}'} | {s.reason} |"
        for s in verdict.shards
    )
    return {
        "shards": dg.MetadataValue.int(meta["shards"]),
        "stale_shards": dg.MetadataValue.json(meta["stale_shards"]),
        "summary": dg.MetadataValue.text(verdict.summary),
        "heartbeats": dg.MetadataValue.md(
            "| shard | status | beat age s | trade age s | detail |\n|---|---|---|---|---|\n" + rows
        ),
    }


@dg.asset_check(
    asset=stream_bars.key,
    name=FRESHNESS_CHECK,
    description="Every streaming shard beat recently and saw a trade recently "
    "(ops.stream_heartbeats); stale or absent -> failed.",
)
def stream_fresh(timescale: TimescaleResource) -> dg.AssetCheckResult:
    """Fails when any streaming shard's heartbeat (or latest trade) is stale, or none exists."""
    return freshness_result(freshness(timescale.run(read_heartbeats)))
