"""Fixtures for the migration tests: fresh databases, market lists, caches built from real data.

Every cache file below is real exchange data from ``../shared/testdata`` (see its README),
re-written under the naming and column conventions legacy caches have.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from ats_pipelines.db.connect import connection
from ats_pipelines.db.migrate import migrate
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import MarketCatalog, catalog_of

# chunks far smaller than the default so that a few thousand real rows span several chunks
TEST_CHUNK_ROWS = 1_000
EXTRA_SYMBOLS = ("XRP/ETH", "ETH/BTC", "LTC/BTC", "ADA/BTC", "XRP/USDT:USDT", "ETH/USDT")


@pytest.fixture(scope="session")
def migration_db(make_database: Callable[..., str]) -> str:
    """One migrated database for the migration tests (separate from the suite's ``db_url``)."""
    url = make_database("ats_mig")

    async def body() -> None:
        async with connection(url) as conn:
            await migrate(conn)

    asyncio.run(body())
    return url


_EMPTIED = (
    "market.candles",
    "market.reference_candles",
    "market.funding_rates",
    "market.trades",
    "ops.quarantine",
    "ops.migration_ledger",
    "ops.migration_unmatched",
)


@pytest.fixture
def fresh_db(migration_db: str) -> str:
    """The migration database emptied of market rows, ledger and quarantine: each test starts
    as on a new server (the real files share symbols, so tests would otherwise see each
    other's rows)."""

    async def body() -> None:
        async with connection(migration_db) as conn:
            await conn.execute(f"TRUNCATE {', '.join(_EMPTIED)}")

    asyncio.run(body())
    return migration_db


def ccxt_symbols(testdata: Path) -> set[str]:
    """Unified symbols in the recorded ccxt Binance responses (inputs and parsed results)."""
    data = json.loads((testdata / "ccxt" / "binance.response.marketdata.json").read_text())
    found: set[str] = set()
    for cases in data["methods"].values():
        for case in cases:
            if case["input"] and isinstance(case["input"][0], str):
                found.add(case["input"][0])
            parsed = case.get("parsedResponse")
            items = parsed.values() if isinstance(parsed, dict) else parsed or []
            for item in items if isinstance(items, list) else list(items):
                if isinstance(item, dict) and isinstance(item.get("symbol"), str):
                    found.add(item["symbol"])
    return found


@pytest.fixture(scope="session")
def catalog(testdata: Path) -> MarketCatalog:
    """Binance's markets as recorded by ccxt, plus the pairs the real files hold."""
    return catalog_of(ccxt_symbols(testdata) | set(EXTRA_SYMBOLS), "binance")


@pytest.fixture
def config() -> MigrationConfig:
    return MigrationConfig(chunk_rows=TEST_CHUNK_ROWS, spill_memory_limit="64MB")


def read_candles(path: Path) -> pl.DataFrame:
    """A freqtrade candle file (feather or JSON list) as date/open/high/low/close/volume."""
    if path.suffix == ".feather":
        frame = pl.from_arrow(feather.read_table(path))
        assert isinstance(frame, pl.DataFrame)
        return frame
    rows = json.loads(path.read_text())
    return pl.DataFrame(
        rows, schema=["ms", "open", "high", "low", "close", "volume"], orient="row"
    ).select(
        pl.from_epoch("ms", time_unit="ms").dt.replace_time_zone("UTC").alias("date"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )


@dataclass
class Expect:
    """What a cache file must yield: symbol, dataset, unique rows (by time) and their values."""

    relative: str
    symbol: str
    dataset: str
    timeframe: str | None
    rows_read: int
    unique: pl.DataFrame  # ts (UTC, µs) + value columns, first row of each time kept
    duplicates: int = 0
    quarantined: int = 0
    assumptions: dict[str, object] = field(default_factory=dict)


@dataclass
class Cache:
    root: Path
    good: dict[str, Expect]
    corrupt: dict[str, str]  # relative path -> words the failure reason must contain
    unmatched: dict[str, str]  # relative path -> words the reason must contain


def _unique(frame: pl.DataFrame) -> pl.DataFrame:
    out = frame.rename({"date": "ts"}) if "date" in frame.columns else frame
    out = out.with_columns(pl.col("ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    return out.unique(subset=["ts"], keep="first", maintain_order=True).sort("ts")


def _write_parquet(frame: pl.DataFrame | pa.Table, path: Path, **kw: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    pq.write_table(table, path, **kw)  # type: ignore[arg-type]


def build_cache(testdata: Path, root: Path) -> Cache:
    """Real files under the conventions a legacy cache mixes (see each comment)."""
    ft = testdata / "freqtrade"
    good: dict[str, Expect] = {}

    # 1. freqtrade's own layout, copied unchanged (feather, tz-aware ns 'date')
    shutil.copy(ft / "XRP_ETH-1m.feather", root / "XRP_ETH-1m.feather")
    src = read_candles(ft / "XRP_ETH-1m.feather")
    good["XRP_ETH-1m.feather"] = Expect(
        "XRP_ETH-1m.feather", "XRP/ETH", "candles", "1m", src.height, _unique(src)
    )

    # 2. exchange/symbol/timeframe folders, epoch milliseconds in 'timestamp', o/h/l/c/v
    src = read_candles(ft / "ETH_BTC-5m.feather")
    ms = src.select(
        pl.col("date").dt.epoch("ms").alias("timestamp"),
        pl.col("open").alias("o"),
        pl.col("high").alias("h"),
        pl.col("low").alias("l"),
        pl.col("close").alias("c"),
        pl.col("volume").alias("v"),
    )
    rel = "binance/ETH_BTC/5m.parquet"
    _write_parquet(ms, root / rel)
    good[rel] = Expect(
        rel,
        "ETH/BTC",
        "candles",
        "5m",
        src.height,
        _unique(src),
        assumptions={"epoch_units": {"ms": src.height}},
    )

    # 3. compact Binance-style name (resolved against the market list), naive 'open_time',
    #    capitalised 'Volume' and an extra column the schema has a place for
    src = read_candles(ft / "XRP_ETH-5m.feather")
    naive = src.select(
        pl.col("date").dt.replace_time_zone(None).alias("open_time"),
        "open",
        "high",
        "low",
        "close",
        pl.col("volume").alias("Volume"),
        (pl.col("volume") * pl.col("close")).alias("quote_asset_volume"),
        pl.lit("x").alias("ignore"),
    )
    rel = "XRPETH_5m.parquet"
    _write_parquet(naive, root / rel)
    good[rel] = Expect(
        rel,
        "XRP/ETH",
        "candles",
        "5m",
        src.height,
        _unique(src),
        assumptions={"dropped_columns": ["ignore"]},
    )

    # 4. perpetual futures in a 'futures' folder with a compact name and a pandas datetime
    #    index (no time column at all)
    src = read_candles(ft / "futures" / "XRP_USDT_USDT-1h-futures.feather")
    rel = "binance/futures/XRPUSDT/1h.parquet"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    indexed = src.to_pandas().set_index("date")
    indexed.index.name = None  # stored as __index_level_0__, named only in pandas metadata
    indexed.to_parquet(root / rel)
    good[rel] = Expect(rel, "XRP/USDT:USDT", "candles", "1h", src.height, _unique(src))

    # 5. duplicates: 400 exact repeats (kept once) and 3 repeats with other values
    #    (quarantined); each repeat follows its original, and pairs start at odd positions so
    #    some pairs straddle the chunk and row-group boundaries (400, 800, 1000)
    src = read_candles(ft / "futures" / "XRP_USDT_USDT-5m-futures.feather")
    exact = src.slice(381, 400)
    conflicting = src.slice(1500, 3).with_columns(pl.col("close") * 1.0001, pl.col("high") * 1.01)
    dup = pl.concat([src, exact, conflicting]).sort("date", maintain_order=True)
    rel = "futures/XRP_USDT_USDT-5m-futures.parquet"
    _write_parquet(dup, root / rel, row_group_size=400)
    good[rel] = Expect(
        rel,
        "XRP/USDT:USDT",
        "candles",
        "5m",
        dup.height,
        _unique(src),
        duplicates=400,
        quarantined=3,
    )

    # 6. unsorted rows (shuffled), epoch SECONDS as floats in 'time', freqtrade name
    src = read_candles(ft / "UNITTEST_BTC-30m.feather")
    order = list(range(src.height))
    random.Random(7).shuffle(order)
    shuffled = src.with_columns((pl.col("date").dt.epoch("ms") / 1000).alias("time")).drop("date")[
        order
    ]
    rel = "LTC_BTC-30m.parquet"
    _write_parquet(shuffled, root / rel, row_group_size=500)
    good[rel] = Expect(
        rel,
        "LTC/BTC",
        "candles",
        "30m",
        src.height,
        _unique(src),
        assumptions={"sorted": "externally (file was not in time order)"},
    )

    # 7. trades, funding rates and mark candles in freqtrade's layout
    shutil.copy(ft / "XRP_ETH-trades.parquet", root / "XRP_ETH-trades.parquet")
    trades = pl.read_parquet(ft / "XRP_ETH-trades.parquet")
    good["XRP_ETH-trades.parquet"] = Expect(
        "XRP_ETH-trades.parquet",
        "XRP/ETH",
        "trades",
        None,
        trades.height,
        trades.select(
            pl.from_epoch("timestamp", time_unit="ms")
            .dt.replace_time_zone("UTC")
            .dt.cast_time_unit("us")
            .alias("ts"),
            pl.col("id").alias("trade_id"),
            "price",
            "amount",
            "cost",
            "side",
        ),
    )
    (root / "futures").mkdir(exist_ok=True)
    for name, dataset in (
        ("XRP_USDT_USDT-8h-funding_rate.feather", "funding_rates"),
        ("XRP_USDT_USDT-8h-mark.feather", "reference_candles"),
    ):
        shutil.copy(ft / "futures" / name, root / "futures" / name)
        src = read_candles(ft / "futures" / name)
        good[f"futures/{name}"] = Expect(
            f"futures/{name}", "XRP/USDT:USDT", dataset, "8h", src.height, _unique(src)
        )

    # 8. freqtrade JSON (list of [ms, o, h, l, c, v]), 1m with real gaps
    shutil.copy(ft / "UNITTEST_BTC-1m.json", root / "ETH_USDT-1m.json")
    src = read_candles(ft / "UNITTEST_BTC-1m.json")
    good["ETH_USDT-1m.json"] = Expect(
        "ETH_USDT-1m.json", "ETH/USDT", "candles", "1m", src.height, _unique(src)
    )

    # corrupt: a page in the LAST row group garbled (earlier chunks load first, then fail),
    # and a feather file cut in half
    src = read_candles(ft / "UNITTEST_BTC-1m.json")
    corrupt_path = root / "ADA_BTC-1m.parquet"
    _write_parquet(src, corrupt_path, row_group_size=2000, compression="snappy")
    garble_last_row_group(corrupt_path)
    half = (ft / "XRP_ETH-1m.feather").read_bytes()
    (root / "BTC_USDT-1m.feather").write_bytes(half[: len(half) // 2])
    corrupt = {"ADA_BTC-1m.parquet": "load failed", "BTC_USDT-1m.feather": "cannot open"}

    # unmatched: no pattern, a symbol the exchange does not list, an unsupported format
    _write_parquet(read_candles(ft / "XRP_ETH-5m.feather"), root / "notes" / "backup.parquet")
    _write_parquet(read_candles(ft / "XRP_ETH-5m.feather"), root / "DOGEUSDT_1h.parquet")
    (root / "README.txt").write_text("cache of 2019\n")
    unmatched = {
        "notes/backup.parquet": "matches no pattern",
        "DOGEUSDT_1h.parquet": "not in binance's market list",
        "README.txt": "unsupported format",
    }
    return Cache(root, good, corrupt, unmatched)


def garble_last_row_group(path: Path) -> None:
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(meta.num_row_groups - 1).column(1)
    data = bytearray(path.read_bytes())
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xab" * column.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.fixture
def cache(testdata: Path, tmp_path: Path) -> Cache:
    root = tmp_path / "cache"
    root.mkdir()
    return build_cache(testdata, root)
