"""Column-name variants, time encodings and types → the canonical layout; chunked reading."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ats_pipelines.migration.normalise import ColumnPlan, NormaliseError
from ats_pipelines.migration.readers import CorruptFileError, json_to_table, open_source

T0 = datetime(2024, 1, 30, 16, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())


def _plan(
    table: pa.Table, dataset: str = "candles", tz: str = "UTC", index: tuple[str, ...] = ()
) -> tuple[ColumnPlan, pl.DataFrame]:
    plan = ColumnPlan.build(table.schema, dataset, index, tz, "test")
    return plan, plan.apply(table, 0)


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (T0_S, "s"),
        (T0_S * 1_000, "ms"),
        (T0_S * 1_000_000, "us"),
        (T0_S * 1_000_000_000, "ns"),
        (float(T0_S), "s"),
    ],
)
def test_epoch_units_are_detected_per_value(value: float, unit: str) -> None:
    table = pa.table(
        {"timestamp": [value], "o": [1.0], "h": [2.0], "l": [0.5], "c": [1.5], "v": [3.0]}
    )
    plan, frame = _plan(table)
    assert frame["ts"][0] == T0
    assert plan.assumptions["epoch_units"] == {unit: 1}


def test_mixed_epoch_units_in_one_column() -> None:
    table = pa.table(
        {
            "open_time": [T0_S, (T0_S + 60) * 1000],
            "Open": [1.0, 1.0],
            "High": [1.0, 1.0],
            "Low": [1.0, 1.0],
            "Close": [1.0, 1.0],
            "Volume": [1.0, 1.0],
        }
    )
    plan, frame = _plan(table)
    assert frame["ts"].to_list() == [T0, datetime(2024, 1, 30, 16, 1, tzinfo=UTC)]
    assert plan.assumptions["epoch_units"] == {"s": 1, "ms": 1}


def test_naive_timestamps_take_the_configured_zone_and_say_so() -> None:
    naive = pa.array([datetime(2024, 1, 30, 17, 0)], pa.timestamp("ns"))
    table = pa.table(
        {"time": naive, "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]}
    )
    plan, frame = _plan(table, tz="Europe/Berlin")
    assert frame["ts"][0] == T0  # 17:00 in Berlin (CET) is 16:00 UTC
    assert "Europe/Berlin" in plan.assumptions["naive_timestamps"]


def test_extras_are_kept_and_unknown_columns_dropped() -> None:
    table = pa.table(
        {
            "date": pa.array([T0], pa.timestamp("ms", "UTC")),
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "volume": [10.0],
            "Number of trades": [42],
            "Taker buy base asset volume": [4.0],
            "quote_asset_volume": [15.0],
            "ignore": ["0"],
        }
    )
    plan, frame = _plan(table)
    assert frame.select("trade_count", "taker_buy_volume", "quote_volume").row(0) == (42, 4.0, 15.0)
    assert plan.assumptions["dropped_columns"] == ["ignore"]


def test_nan_volume_becomes_null_and_strings_become_numbers() -> None:
    table = pa.table(
        {
            "date": pa.array([T0], pa.timestamp("us", "UTC")),
            "open": ["1.5"],
            "high": ["2"],
            "low": [" 1 "],
            "close": ["1.5"],
            "volume": [float("nan")],
        }
    )
    _, frame = _plan(table, "reference_candles")
    assert frame.select("open", "high", "low", "volume").row(0) == (1.5, 2.0, 1.0, None)


def test_funding_rate_from_freqtrades_open_column() -> None:
    table = pa.table(
        {
            "date": pa.array([T0], pa.timestamp("ns", "UTC")),
            "open": [0.0001],
            "high": [0.0],
            "low": [0.0],
            "close": [0.0],
            "volume": [0.0],
        }
    )
    plan, frame = _plan(table, "funding_rates")
    assert frame["rate"][0] == 0.0001
    assert "open" in plan.assumptions["funding_rate_column"]


def test_trade_side_from_buyer_maker() -> None:
    table = pa.table(
        {
            "timestamp": [T0_S * 1000] * 3,
            "trade_id": [1, 2, 3],
            "price": [1.0] * 3,
            "quantity": [2.0] * 3,
            "buyer_maker": ["True", "False", None],
        }
    )
    _, frame = _plan(table, "trades")
    assert frame["side"].to_list() == ["sell", "buy", None]
    assert frame["trade_id"].to_list() == ["1", "2", "3"]
    assert frame["amount"].to_list() == [2.0] * 3


def test_datetime_index_of_a_pandas_parquet(tmp_path: Path) -> None:
    frame = (
        pl.DataFrame(
            {
                "date": [T0],
                "open": [1.0],
                "high": [1.0],
                "low": [1.0],
                "close": [1.0],
                "volume": [1.0],
            }
        )
        .to_pandas()
        .set_index("date")
    )
    frame.index.name = None
    frame.to_parquet(tmp_path / "x.parquet")
    reader = open_source(
        tmp_path / "x.parquet", "parquet", "candles", chunk_rows=1000, json_max_bytes=1 << 20
    )
    plan = ColumnPlan.build(reader.schema, "candles", reader.index_columns, "UTC", "x")
    assert plan.time_column == "__index_level_0__"
    assert plan.apply(next(reader.chunks()), 0)["ts"][0] == T0


def test_missing_columns_are_named() -> None:
    table = pa.table({"date": [T0_S], "open": [1.0], "close": [1.0]})
    with pytest.raises(NormaliseError, match="high, low, volume"):
        ColumnPlan.build(table.schema, "candles", (), "UTC", "f.parquet")
    with pytest.raises(NormaliseError, match="no time column"):
        ColumnPlan.build(pa.table({"x": [1]}).schema, "candles", (), "UTC", "f.parquet")


def test_parquet_is_read_in_bounded_chunks(tmp_path: Path) -> None:
    table = pa.table({"date": list(range(10_500)), "v": [1.0] * 10_500})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=3_000)
    reader = open_source(
        tmp_path / "big.parquet", "parquet", "candles", chunk_rows=2_000, json_max_bytes=1
    )
    sizes = [c.num_rows for c in reader.chunks()]
    assert reader.num_rows == 10_500 and sum(sizes) == 10_500 and max(sizes) <= 2_000


def test_json_layouts_and_limits(tmp_path: Path) -> None:
    rows = [[T0_S * 1000, 1.0, 2.0, 0.5, 1.5, 3.0]]
    assert json_to_table(rows, "candles", origin="x").column_names == [
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]
    split = {"columns": ["date", "open"], "data": [[1, 2.0]]}
    assert json_to_table(split, "candles", origin="x").column_names == ["date", "open"]
    records = [{"timestamp": 1, "price": 1.0}]
    assert json_to_table(records, "trades", origin="x").num_rows == 1
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps(rows * 100).encode()))
    with pytest.raises(CorruptFileError, match="json_max_bytes=100"):
        open_source(path, "json.gz", "candles", chunk_rows=1000, json_max_bytes=100)
    (tmp_path / "bad.json").write_text("[[1, 2.0], [3")
    with pytest.raises(CorruptFileError, match="invalid JSON"):
        open_source(
            tmp_path / "bad.json", "json", "candles", chunk_rows=1000, json_max_bytes=1 << 20
        )
