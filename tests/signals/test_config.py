"""Signals settings from the environment: defaults, overrides, and errors naming the variable."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from ats_pipelines.config import ConfigError
from ats_pipelines.signals.config import (
    DEFAULT_TREND_PARAMS,
    TrendParams,
    load_signals_settings,
)


def test_defaults_follow_the_market_data_symbols() -> None:
    settings = load_signals_settings({"ATS_EXCHANGE": "binance", "ATS_SYMBOLS": "BTC/USDT"})
    assert (settings.exchange, settings.symbols) == ("binance", ("BTC/USDT",))
    assert settings.timeframes == ("5m", "15m", "1h", "4h")
    assert settings.coordinator.timeframes == ("15m", "1h")
    assert settings.coordinator.window == timedelta(hours=4)
    assert settings.params("1h") == DEFAULT_TREND_PARAMS["1h"]
    assert settings.sensor_interval_s == 30 and settings.analyzer_id == "trend_v1"


def test_overrides() -> None:
    settings = load_signals_settings(
        {
            "ATS_SIGNAL_TIMEFRAMES": "1h, 15m,5m",
            "ATS_COORDINATOR_TIMEFRAMES": "5m,1h",
            "ATS_COORDINATOR_WINDOW": "90m",
            "ATS_SIGNAL_SENSOR_INTERVAL": "10",
            "ATS_TREND_PARAMS": "1h:lookback=20;15m:swing=2,sensitivity=0.01",
            "ATS_TREND_ANALYZER_ID": "trend_v2",
        }
    )
    assert settings.timeframes == ("5m", "15m", "1h")
    assert settings.coordinator.timeframes == ("5m", "1h")
    assert settings.coordinator.window == timedelta(minutes=90)
    assert settings.params("1h") == TrendParams(2, 20, 0.002)
    assert settings.params("15m") == TrendParams(2, 32, 0.01)
    assert (settings.sensor_interval_s, settings.analyzer_id) == (10, "trend_v2")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ATS_SIGNAL_TIMEFRAMES": "5x"}, "ATS_SIGNAL_TIMEFRAMES: invalid timeframe '5x'"),
        ({"ATS_SIGNAL_TIMEFRAMES": "1M"}, "calendar month"),
        ({"ATS_SIGNAL_TIMEFRAMES": "5m,15m"}, "ATS_COORDINATOR_TIMEFRAMES: 1h not analysed"),
        ({"ATS_SIGNAL_TIMEFRAMES": "2h,15m,1h"}, "no trend parameters for 2h"),
        ({"ATS_TREND_PARAMS": "1h:swing=0"}, "swing=0: must be an integer >= 1"),
        ({"ATS_TREND_PARAMS": "1h:lookback=7"}, "lookback=7: must be an integer >= 3*swing+2 = 8"),
        ({"ATS_TREND_PARAMS": "1h:sensitivity=1.5"}, "sensitivity=1.5"),
        ({"ATS_TREND_PARAMS": "1h:depth=3"}, "'depth=3' of 1h is not swing="),
        ({"ATS_TREND_PARAMS": "1h:swing=two"}, "swing='two' of 1h is not a number"),
        ({"ATS_TREND_PARAMS": "1h"}, "'1h' is not tf:name=value"),
        ({"ATS_TREND_PARAMS": "2h:swing=2"}, "2h has no defaults"),
        ({"ATS_COORDINATOR_WINDOW": "soon"}, "ATS_COORDINATOR_WINDOW='soon' is not a duration"),
        ({"ATS_SIGNAL_SENSOR_INTERVAL": "fast"}, "ATS_SIGNAL_SENSOR_INTERVAL='fast'"),
        ({"ATS_SIGNAL_SENSOR_INTERVAL": "0"}, "ATS_SIGNAL_SENSOR_INTERVAL=0"),
        ({"ATS_TREND_ANALYZER_ID": "trend v1"}, "ATS_TREND_ANALYZER_ID='trend v1'"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_signals_settings(env)
