"""``read_labels``, the analyst's entity rows: a window, or one line naming it when it is empty."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ats_pipelines.features.builder import build_labels
from ats_pipelines.features.labels import LabelSpec
from ats_pipelines.features.lake import Lake
from ats_pipelines.features.training import NoLabelsError, read_labels
from tests.features.conftest import START, all_timeframes, synthetic_minutes, write_lake

SYMBOL = "BTC/USDT"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    write_lake(lake, all_timeframes(synthetic_minutes("binance", SYMBOL, days=2)))
    build_labels(lake, LabelSpec(), "binance", SYMBOL, [START.date()])
    return lake


def test_a_window_with_labels_gives_its_rows(lake: Lake) -> None:
    labels = read_labels(lake, START, START + timedelta(hours=2), symbols=[SYMBOL])
    assert len(labels) > 0
    assert labels["event_timestamp"].min() >= START
    assert set(labels["symbol"]) == {SYMBOL}


@pytest.mark.parametrize("symbols", [None, ["ETH/USDT"]])
def test_an_empty_window_is_one_line_naming_it(lake: Lake, symbols: list[str] | None) -> None:
    start = START + timedelta(days=30) if symbols is None else START
    with pytest.raises(NoLabelsError) as err:
        read_labels(lake, start, start + timedelta(days=1), symbols=symbols)
    message = str(err.value)
    assert "\n" not in message
    assert f"[{start:%Y-%m-%d %H:%M}, {start + timedelta(days=1):%Y-%m-%d %H:%M}) UTC" in message
    assert f"span {START:%Y-%m-%d}" in message  # what the lake does hold
    if symbols:
        assert "of ETH/USDT" in message


def test_a_lake_without_labels_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoLabelsError, match=r"none built yet.*make demo"):
        read_labels(Lake(tmp_path), START, START + timedelta(days=1))
