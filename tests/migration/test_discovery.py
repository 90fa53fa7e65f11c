"""File names → dataset, symbol, timeframe, market type; markets resolve compact names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ats_pipelines.migration.config import MigrationConfig, UserPattern, config_from_mapping
from ats_pipelines.migration.discovery import DiscoveredFile, Identifier, UnmatchedFile, discover
from ats_pipelines.migration.markets import MarketCatalog, catalog_from_json, catalog_of
from ats_pipelines.migration.patterns import normalise_timeframe

LISTED = catalog_of(
    ["BTC/USDT", "ETH/USDT", "XRP/ETH", "BTC/USDT:USDT", "XRP/USDT:USDT", "BTC/USD:BTC"], "binance"
)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("BTC_USDT-1m.parquet", ("candles", "binance", "BTC/USDT", "1m", "spot", None)),
        (
            "futures/XRP_USDT_USDT-1h-futures.feather",
            ("candles", "binance", "XRP/USDT:USDT", "1h", "futures", None),
        ),
        (
            "futures/XRP_USDT_USDT-8h-mark.feather",
            ("reference_candles", "binance", "XRP/USDT:USDT", "8h", "futures", "mark"),
        ),
        (
            "futures/XRP_USDT_USDT-8h-funding_rate.feather",
            ("funding_rates", "binance", "XRP/USDT:USDT", "8h", "futures", None),
        ),
        ("XRP_ETH-trades.json.gz", ("trades", "binance", "XRP/ETH", None, "spot", None)),
        ("BTCUSDT_1m.parquet", ("candles", "binance", "BTC/USDT", "1m", "spot", None)),
        ("ETH-USDT_1h.parquet", ("candles", "binance", "ETH/USDT", "1h", "spot", None)),
        ("binance/BTC_USDT/1m.parquet", ("candles", "binance", "BTC/USDT", "1m", "spot", None)),
        (
            "binance/futures/BTCUSDT/4H.parquet",
            ("candles", "binance", "BTC/USDT:USDT", "4h", "futures", None),
        ),
        ("BTC_USDT_1min.parquet", ("candles", "binance", "BTC/USDT", "1m", "spot", None)),
        ("BTCUSDT-60m.parquet", ("candles", "binance", "BTC/USDT", "1h", "spot", None)),
        ("ETHUSDT/trades.parquet", ("trades", "binance", "ETH/USDT", None, "spot", None)),
    ],
)
def test_names_are_identified(tmp_path: Path, relative: str, expected: tuple[str, ...]) -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    found = Identifier.build(MigrationConfig(), LISTED).identify(tmp_path, path)
    assert isinstance(found, DiscoveredFile), found
    got = (
        found.dataset,
        found.exchange,
        found.symbol,
        found.timeframe,
        found.market_type,
        found.price_type,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("relative", "catalog", "reason"),
    [
        ("notes_final.parquet", LISTED, "matches no pattern"),
        ("BTCUSDT.parquet", LISTED, "matches no pattern"),
        ("BTCUSDT_1m.parquet", MarketCatalog(), "no market list for binance"),
        ("DOGEUSDT_1m.parquet", LISTED, "not in binance's market list"),
        ("UNITTEST_BTC-1m.json", LISTED, "not in binance's market list"),
        ("BTC_USDT-1m.h5", LISTED, "unsupported format .h5"),
        ("BTC_USDT-1m-mark.csv", LISTED, "unsupported format"),
    ],
)
def test_unusable_names_say_why(
    tmp_path: Path, relative: str, catalog: MarketCatalog, reason: str
) -> None:
    path = tmp_path / relative
    path.write_bytes(b"")
    found = Identifier.build(MigrationConfig(), catalog).identify(tmp_path, path)
    assert isinstance(found, UnmatchedFile)
    assert reason in found.reason


def test_ambiguous_compact_name_is_listed_not_guessed(tmp_path: Path) -> None:
    """'ABCDEF' splits as ABC/DEF or ABCD/EF: with both listed, neither is chosen."""
    path = tmp_path / "ABCDEF_1h.parquet"
    path.write_bytes(b"")
    catalog = catalog_of(["ABC/DEF", "ABCD/EF"], "binance")
    found = Identifier.build(MigrationConfig(), catalog).identify(tmp_path, path)
    assert isinstance(found, UnmatchedFile)
    assert "ambiguous" in found.reason and "ABC/DEF" in found.reason


def test_user_patterns_come_first(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "patterns": [
                {
                    "regex": r"(?P<base>[A-Z]+)\.(?P<quote>[A-Z]+)@(?P<timeframe>\w+)$",
                    "exchange": "kraken",
                },
            ]
        }
    )
    path = tmp_path / "ETH.USDT@15m.parquet"
    path.write_bytes(b"")
    found = Identifier.build(config, MarketCatalog()).identify(tmp_path, path)
    assert isinstance(found, DiscoveredFile)
    assert (found.exchange, found.symbol, found.timeframe) == ("kraken", "ETH/USDT", "15m")
    assert found.assumptions["pattern"] == "user_1"


def test_discover_lists_everything_recursively(tmp_path: Path) -> None:
    for rel in ("a/BTC_USDT-1m.parquet", "a/b/ETH_USDT-5m.feather", "a/b/c/readme.md", "x.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = discover(tmp_path, MigrationConfig(), LISTED)
    assert [f.relative for f in found.files] == ["a/BTC_USDT-1m.parquet", "a/b/ETH_USDT-5m.feather"]
    assert [u.relative for u in found.unmatched] == ["a/b/c/readme.md", "x.parquet"]


def test_market_list_layouts() -> None:
    assert catalog_from_json(["BTC/USDT"]).for_exchange("kraken") == {"BTC/USDT"}
    by_exchange = catalog_from_json({"binance": ["BTC/USDT"], "kraken": ["XBT/EUR"]})
    assert by_exchange.for_exchange("kraken") == {"XBT/EUR"}
    markets = catalog_from_json({"BTC/USDT": {"symbol": "BTC/USDT", "type": "spot"}})
    assert markets.resolve("BTCUSDT", "binance", "spot").symbol == "BTC/USDT"
    assert by_exchange.for_exchange("okx") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", "1m"),
        ("1min", "1m"),
        ("60m", "1h"),
        ("1H", "1h"),
        ("1D", "1d"),
        ("1Mo", "1M"),
        ("1M", "1M"),
        ("1w", "1w"),
        ("120m", "2h"),
    ],
)
def test_timeframe_spellings(text: str, expected: str) -> None:
    assert normalise_timeframe(text) == expected


def test_user_pattern_needs_a_symbol() -> None:
    with pytest.raises(ValueError, match="symbol"):
        Identifier.build(
            MigrationConfig(patterns=(UserPattern(r"(?P<timeframe>\w+)"),)), MarketCatalog()
        )
