"""The universe (exchange, symbols, first day, exchange URL): read once, passed down, and the
one thing streaming, training, signals and the read API take from the market settings."""

from __future__ import annotations

import pytest

from ats_pipelines.config import ConfigError
from ats_pipelines.signals.config import load_signals_settings
from ats_pipelines.streaming.config import load_stream_config
from ats_pipelines.training.config import load_training_settings
from ats_pipelines.universe import EMULATOR_URL, Universe, load_universe
from ats_pipelines.warehouse.config import MarketDataSettings, load_market_data_settings

ENV = {
    "ATS_ENV": "test",
    "ATS_EXCHANGE": "kraken",
    "ATS_SYMBOLS": "SOL/USDT, XRP/USDT",
    "ATS_MARKET_DATA_START": "2023-06-01",
}


def test_loaded_from_the_environment() -> None:
    universe = load_universe(ENV)
    assert universe == Universe("kraken", ("SOL/USDT", "XRP/USDT"), "2023-06-01", EMULATOR_URL)
    assert load_universe({"ATS_ENV": "prod"}).exchange_url is None


def test_market_settings_carry_the_same_universe() -> None:
    assert load_market_data_settings(ENV).universe == load_universe(ENV)
    passed = Universe("bybit", ("BTC/USDT",), "2022-01-01", None)
    assert load_market_data_settings(ENV, universe=passed).universe == passed


def test_domains_take_the_universe_passed_down() -> None:
    passed = Universe("bybit", ("BTC/USDT", "ETH/USDT"), "2022-01-01", "http://127.0.0.1:1")
    stream = load_stream_config(ENV, universe=passed)
    assert (stream.exchange, stream.symbols, stream.exchange_url) == (
        "bybit",
        ("BTC/USDT", "ETH/USDT"),
        "http://127.0.0.1:1",
    )
    scope = load_training_settings(ENV, universe=passed).scopes["default"]
    assert (scope.exchange, scope.symbols) == ("bybit", ("BTC/USDT", "ETH/USDT"))
    signals = load_signals_settings(ENV, universe=passed)
    assert (signals.exchange, signals.symbols) == ("bybit", ("BTC/USDT", "ETH/USDT"))


def test_streaming_does_not_read_the_market_domains_retention() -> None:
    env = {**ENV, "ATS_RETENTION": "market.trades=soon"}
    with pytest.raises(ConfigError, match="ATS_RETENTION"):
        load_market_data_settings(env)
    assert load_stream_config(env).exchange == "kraken"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"exchange": "Kraken!"}, "ATS_EXCHANGE"),
        ({"symbols": ()}, "ATS_SYMBOLS"),
        ({"symbols": ("BTCUSDT",)}, "BTCUSDT"),
        ({"symbols": ("BTC/USDT", "BTC/USDT")}, "repeats"),
        ({"start_date": "yesterday"}, "ATS_MARKET_DATA_START"),
    ],
)
def test_bad_values_name_the_variable(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Universe(**fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=named):
        MarketDataSettings(**fields)  # type: ignore[arg-type]
