"""Analyst example: a training set for a window, the latest features online, SQL on the lake.

    uv run --frozen python examples/feature_retrieval.py               # the lake `make demo` built
    uv run --frozen python examples/feature_retrieval.py --synthetic   # a throwaway lake, no DB

Without ``--synthetic`` it reads what the platform wrote under ``.ats/`` (run ``make demo``
first). With it, it builds two days of a synthetic market into a temporary lake, computes the
features, applies the Feast repository to a temporary registry and materialises it — the same
code the Dagster assets run — then does the same three things.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ats_pipelines.config import load_settings
from ats_pipelines.features import catalog as cat
from ats_pipelines.features.builder import build_features, build_labels
from ats_pipelines.features.duck import connect
from ats_pipelines.features.export import BOOK_DATASET, CANDLE_SCHEMA, candles_dataset
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import SYMBOL_KEY, Lake, write_if_changed
from ats_pipelines.features.repo import build_repo
from ats_pipelines.features.store import apply_repo, materialize_views, open_store
from ats_pipelines.features.training import NoLabelsError, read_labels, training_frame
from ats_pipelines.features.views import register_views

REPO = Path(__file__).resolve().parents[1] / "feature_repo"
SUMMARY_SQL = """
SELECT symbol, count(*) AS minutes, round(avg(rsi_14), 1) AS mean_rsi,
       max(event_timestamp) AS latest
FROM features_1m GROUP BY symbol ORDER BY symbol
"""


def synthetic_lake(
    root: Path, exchange: str = "binance", symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
) -> list:
    """Two days of seeded random-walk minutes and their rollups, as the export writes them."""
    start = datetime(2024, 3, 4, tzinfo=UTC)
    lake = Lake(root)
    for seed, symbol in enumerate(symbols):
        rng = np.random.default_rng(seed)
        n = 2 * 1440
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = np.concatenate([[100.0], close[:-1]])
        minutes = pl.DataFrame(
            {
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": "1m",
                "ts": pl.datetime_range(
                    start,
                    start + timedelta(minutes=n - 1),
                    "1m",
                    eager=True,
                    time_unit="us",
                    time_zone="UTC",
                ),
                "open": open_,
                "high": np.maximum(open_, close) * 1.0004,
                "low": np.minimum(open_, close) * 0.9996,
                "close": close,
                "volume": rng.lognormal(2, 1, n),
            }
        )
        for tf in cat.EXPORT_TIMEFRAMES:
            bars = (
                minutes
                if tf == "1m"
                else minutes.group_by_dynamic("ts", every=tf, group_by=["exchange", "symbol"])
                .agg(
                    pl.col("open").first(),
                    pl.col("high").max(),
                    pl.col("low").min(),
                    pl.col("close").last(),
                    pl.col("volume").sum(),
                )
                .with_columns(pl.lit(tf).alias("timeframe"))
            )
            bars = bars.with_columns(
                [pl.lit(None).alias(f.name) for f in CANDLE_SCHEMA if f.name not in bars.columns]
            )
            for (day,), part in bars.group_by(pl.col("ts").dt.date()):
                write_if_changed(
                    lake.partition_path(candles_dataset(tf), exchange, symbol, day),
                    part.sort("ts").select(CANDLE_SCHEMA.names).to_arrow().cast(CANDLE_SCHEMA),
                    {SYMBOL_KEY: symbol},
                )
        days = lake.days(candles_dataset("1m"), exchange, symbol)
        for tf in (*cat.HIGHER_TIMEFRAMES, cat.BASE_TIMEFRAME):
            build_features(lake, cat.family_of(tf), exchange, symbol, days)
        build_labels(lake, LabelSpec(), exchange, symbol, days)
    assert not any(lake.dataset_dir(BOOK_DATASET).glob("*"))  # no order book in this market
    return list(symbols)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="build a throwaway lake")
    args = parser.parse_args()
    settings = load_settings()
    scratch = tempfile.TemporaryDirectory(prefix="ats_example_") if args.synthetic else None
    if scratch:
        root = Path(scratch.name)
        synthetic_lake(root / "lake")
        lake, values = (
            Lake(root / "lake"),
            {
                "ATS_FEAST_REGISTRY": str(root / "registry.db"),
                "ATS_FEAST_ONLINE_STORE": str(root / "online.db"),
            },
        )
    else:
        lake = Lake(settings.lake_dir)
        values = {
            "ATS_FEAST_REGISTRY": settings.feast_registry,
            "ATS_FEAST_ONLINE_STORE": settings.feast_online_store,
        }
    # The same as `feast -c feature_repo …` after `eval "$(uv run ats features env)"`.
    store = open_store(REPO, values)
    if scratch:
        apply_repo(store, build_repo(lake.root))
        materialize_views(store, list(cat.FAMILIES))
    print("feature services:", ", ".join(s.name for s in store.list_feature_services()))

    # 1. A training set for a window: labels are the entity rows, features as of their time.
    try:
        labels = read_labels(lake, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    except NoLabelsError as exc:
        raise SystemExit(f"{exc}, or use --synthetic") from None
    end = labels["event_timestamp"].max()
    window = labels.loc[labels["event_timestamp"] > end - timedelta(hours=6)].copy()
    train = training_frame(store, window, "signals_v1")
    print(
        f"\ntraining set: {len(train):,} rows x {train.shape[1]} columns, "
        f"{window['event_timestamp'].min()} .. {end}"
    )
    print(
        train[
            [
                "symbol",
                "event_timestamp",
                "label",
                "tb_reward_risk",
                "ret_15",
                "rsi_14",
                "tf1h_rsi_14",
                "tf4h_ret_1",
            ]
        ]
        .tail(4)
        .to_string(index=False)
    )

    # 2. The latest features online (what a live model reads).
    symbols = sorted(set(window["symbol"]))
    exchange = str(window["exchange"].tolist()[0])
    online = store.get_online_features(
        features=["features_1m:rsi_14", "features_1m:tf1h_rsi_14", "features_1h:natr_14"],
        entity_rows=[{"symbol": s, "exchange": exchange} for s in symbols],
    ).to_df()
    print("\nonline:\n" + online.to_string(index=False))

    # 3. SQL on the lake's views (the same as `uv run ats features sql "…"`).
    con = connect()
    register_views(con, lake)
    print("\n" + str(con.sql(SUMMARY_SQL).pl()))
    con.close()
    print(
        '\nCLI: eval "$(uv run ats features env)"; uv run feast -c feature_repo '
        "feature-views list; uv run feast -c feature_repo serve"
    )
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    main()
