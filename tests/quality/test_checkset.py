"""The check set on real rows stored in TimescaleDB (a fresh database for this module), the
quality score, and the Great Expectations suite against the plain-SQL implementation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.db.connect import connection
from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features, build_labels
from ats_pipelines.features.export import export_partitions
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake
from ats_pipelines.quality import loaders, validate
from ats_pipelines.quality.checkset import candle_entries, lake_entries, scores, table_entries
from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.sqlbaseline import candle_rule_counts
from tests.quality.conftest import NOW, run_sync

WINDOW = (datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 13, 11, 20, tzinfo=UTC))
POLICY = QualityPolicy()


async def store(
    url: str,
    exchange: str,
    candles: pl.DataFrame,
    *,
    empty: pl.DataFrame | None,
    trades: pl.DataFrame | None = None,
    source: str = "rest",
) -> None:
    async with connection(url) as conn:
        await bulk_write(
            conn,
            "market.candles",
            candles.with_columns(
                pl.lit(exchange).alias("exchange"), pl.lit(source).alias("source")
            ),
        )
        if empty is not None:
            await bulk_write(
                conn,
                "market.empty_intervals",
                empty.with_columns(
                    pl.lit(exchange).alias("exchange"),
                    pl.lit("1m").alias("timeframe"),
                    pl.lit(2).alias("asks"),
                ),
            )
        if trades is not None:
            await bulk_write(
                conn,
                "market.trades",
                trades.with_columns(
                    pl.lit(exchange).alias("exchange"), pl.lit(source).alias("source")
                ),
            )


def test_real_rows_pass_every_suite_and_score_full(
    quality_db: str,
    exchange_name: str,
    xrp_candles: pl.DataFrame,
    xrp_empty_minutes: pl.DataFrame,
    xrp_trades: pl.DataFrame,
    testdata: Path,
) -> None:
    five = pl.read_ipc(testdata / "freqtrade" / "XRP_ETH-5m.feather").select(
        pl.lit("XRP/ETH").alias("symbol"),
        pl.lit("5m").alias("timeframe"),
        pl.col("date").dt.cast_time_unit("us").alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )
    run_sync(
        store(
            quality_db,
            exchange_name,
            pl.concat([xrp_candles.drop("exchange"), five]),
            empty=xrp_empty_minutes.drop("exchange"),
            trades=xrp_trades.drop("exchange"),
        )
    )

    async def body() -> tuple[list, pl.DataFrame]:
        async with connection(quality_db) as conn:
            entries = await candle_entries(
                conn, WINDOW, now=NOW, policy=POLICY, timeframes=("1m", "5m")
            )
            entries += await table_entries(conn, WINDOW, now=NOW, policy=POLICY)
            return entries, await scores(conn, WINDOW, now=NOW, policy=POLICY)

    entries, scored = run_sync(body())
    mine = {(e.spec.asset, e.spec.name): e for e in entries if e.label == exchange_name}
    assert set(mine) == {
        ("candles_1m", "candles_suite"),
        ("candles_5m", "candles_suite"),
        ("market.trades", "trades_suite"),
    }
    for entry in mine.values():
        assert entry.passed, entry.summary
    assert mine[("candles_1m", "candles_suite")].coverage == 1.0
    assert mine[("candles_1m", "candles_suite")].rows == 2469
    assert mine[("market.trades", "trades_suite")].rows == 12477
    five_cov = mine[("candles_5m", "candles_suite")].coverage
    assert five_cov is not None and 0.99 < five_cov < 1.0  # 706 of 712 buckets (no empties)

    row = scored.filter(pl.col("exchange") == exchange_name).row(0, named=True)
    assert (row["completeness"], row["validity"], row["rows"]) == (1.0, 1.0, 2469)
    assert row["freshness"] == 0.0  # the newest bar closed in 2019


def test_misaligned_and_missing_rows_fail_and_plain_sql_agrees(
    quality_db: str, exchange_name: str, xrp_candles: pl.DataFrame, xrp_empty_minutes: pl.DataFrame
) -> None:
    """Broken in ways the table accepts (its CHECKs refuse bad OHLCV): three bars stored 30 s
    off the minute, six hours missing. GX and the SQL baseline find the same violations."""
    hole = (datetime(2019, 10, 12, 3, tzinfo=UTC), datetime(2019, 10, 12, 9, tzinfo=UTC))
    index = pl.int_range(pl.len())
    broken = xrp_candles.filter(~pl.col("ts").is_between(*hole, closed="left")).with_columns(
        pl.when(index.is_in([100, 200, 300]))
        .then(pl.col("ts") + timedelta(seconds=30))
        .otherwise(pl.col("ts"))
        .alias("ts")
    )
    run_sync(
        store(
            quality_db,
            exchange_name,
            broken.drop("exchange"),
            empty=xrp_empty_minutes.drop("exchange"),
        )
    )

    async def body() -> tuple:
        async with connection(quality_db) as conn:
            frame = await loaders.load_candles(conn, exchange_name, ["XRP/ETH"], "1m", *WINDOW)
            empty = await loaders.load_confirmed_empty(
                conn, exchange_name, ["XRP/ETH"], "1m", *WINDOW
            )
            sql = await candle_rule_counts(
                conn,
                exchange=exchange_name,
                symbols=["XRP/ETH"],
                timeframe="1m",
                start=WINDOW[0],
                end=WINDOW[1],
                now=NOW,
                policy=POLICY,
            )
            return frame, empty, sql

    frame, empty, sql = run_sync(body())
    gx = validate.check_candles(
        frame.drop("source", "trade_count"),
        timeframe="1m",
        now=NOW,
        window=WINDOW,
        confirmed_empty=empty,
        series=[(exchange_name, "XRP/ETH")],
    )
    assert gx.failed_rules == sql.failed_rules == ["ohlcv.coverage", "ohlcv.ts_aligned"]
    aligned = next(f for f in gx.failures if f.rule == "ohlcv.ts_aligned")
    assert aligned.unexpected_count == sql.violations["ohlcv.ts_aligned"] == 3
    assert {s["ts"] for s in aligned.sample} == {
        (xrp_candles["ts"][i] + timedelta(seconds=30)).isoformat() for i in (100, 200, 300)
    }
    assert gx.coverage == pytest.approx(sql.coverage["XRP/ETH"], abs=1e-12)
    assert sql.rows == gx.rows == broken.height


def test_lake_features_and_labels_of_real_bars_pass_and_a_lost_day_fails(
    quality_db: str,
    exchange_name: str,
    xrp_candles: pl.DataFrame,
    xrp_empty_minutes: pl.DataFrame,
    tmp_path: Path,
) -> None:
    """The features pipeline on real bars (DB -> lake export -> features_1m, labels_1m), then
    the quality checks on its files; a day of features deleted fails the row-count rule."""
    days = [date(2019, 10, 11), date(2019, 10, 12), date(2019, 10, 13)]
    lake = Lake(tmp_path / "lake")
    run_sync(
        store(
            quality_db,
            exchange_name,
            xrp_candles.drop("exchange"),
            empty=xrp_empty_minutes.drop("exchange"),
        )
    )

    async def export() -> None:
        async with connection(quality_db) as conn:
            await export_partitions(conn, lake, exchange_name, "XRP/ETH", days, timeframes=("1m",))

    run_sync(export())
    build_features(lake, cat.BASE_FAMILY, exchange_name, "XRP/ETH", days)
    build_labels(lake, LabelSpec(), exchange_name, "XRP/ETH", days)

    async def check() -> list:
        async with connection(quality_db) as conn:
            entries = await lake_entries(conn, lake, WINDOW, policy=POLICY)
        return [e for e in entries if e.label == exchange_name]

    entries = {e.spec.asset: e for e in run_sync(check())}
    assert set(entries) == {"features_1m", "labels_1m"}  # the families built here
    assert entries["features_1m"].passed, entries["features_1m"].summary
    assert entries["features_1m"].rows == xrp_candles.height
    assert entries["labels_1m"].passed, entries["labels_1m"].summary

    lake.partition_path(cat.BASE_FAMILY.dataset, exchange_name, "XRP/ETH", days[1]).unlink()
    entries = {e.spec.asset: e for e in run_sync(check())}
    outcome = entries["features_1m"].outcome
    assert outcome is not None and outcome.failed_rules == ["features.rows_vs_candles"]
