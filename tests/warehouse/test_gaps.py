"""Gaps: the emulator withholds minutes, the partition check fails listing exactly them, the
repair re-fetches exactly those minutes (interior, head and tail) and the check passes; minutes
the exchange keeps answering empty are confirmed and never asked again; unasked days fail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ats_pipelines.emulator.kline_faults import install_kline_faults
from ats_pipelines.emulator.server import Emulator
from ats_pipelines.warehouse.intervals import Interval, minute_runs
from tests.warehouse.conftest import DAY1, DAY2, MarketDefs, key

MINUTE = timedelta(minutes=1)


def _minutes(day: str, *spans: tuple[str, int]) -> list[datetime]:
    """``("10:00", 3)`` -> the minutes 10:00, 10:01, 10:02 of ``day`` (UTC)."""
    out = []
    for start, count in spans:
        first = datetime.fromisoformat(f"{day}T{start}:00+00:00")
        out += [first + i * MINUTE for i in range(count)]
    return out


def _meta(result: Any) -> dict[str, Any]:
    mat = result.asset_materializations_for_node("candles_1m")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def _klines_requests(emulator: Emulator) -> int:
    return emulator.rest.paths["/api/v3/klines"]


def test_injected_gaps_fail_the_check_and_repair_fills_exactly_them(
    make_defs: Callable[..., MarketDefs],
    fresh_emulator: Emulator,
    exchange_name: str,
    query: Callable[..., list[Any]],
) -> None:
    faults = install_kline_faults(fresh_emulator, "BTCUSDT")
    # head, two interior runs, and the tail of the day
    withheld = _minutes(DAY1, ("00:00", 2), ("07:13", 5), ("15:40", 1), ("23:58", 2))
    faults.withhold(withheld)
    md = make_defs(exchange_name, fresh_emulator)

    backfill = md.materialize(
        ["candles_1m"], partition=key(DAY1), with_check=True, raise_on_error=False
    )
    meta = _meta(backfill)
    assert meta["rows_inserted"] == 1440 - len(withheld)
    assert meta["missing_minutes"] == len(withheld)
    (evaluation,) = backfill.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.partition == key(DAY1)
    check_meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert check_meta["missing_minutes"] == len(withheld)
    assert check_meta["missing_by_reason"] == {"unconfirmed_empty": len(withheld)}
    for run in minute_runs(withheld):
        assert str(run) in str(check_meta["gaps"])

    # the exchange catches up; the repair asks for exactly the four missing runs
    faults.heal()
    before = _klines_requests(fresh_emulator)
    repair = _meta(md.materialize(["candles_1m"], partition=key(DAY1), repair=True))
    assert repair["mode"] == "repair"
    assert repair["rest_ranges"] == 4
    assert _klines_requests(fresh_emulator) - before == 4  # one page each
    assert (repair["rows_fetched"], repair["rows_inserted"]) == (len(withheld), len(withheld))
    assert repair["missing_minutes"] == 0
    asked = query(
        "SELECT range_start, range_end FROM market.fetch_log WHERE exchange = $1 "
        "AND range_end - range_start < INTERVAL '1 day' ORDER BY 1",
        exchange_name,
    )
    assert [Interval(r["range_start"], r["range_end"]) for r in asked] == minute_runs(withheld)

    assert md.check(key(DAY1)).passed
    stored = query(
        "SELECT count(*) AS n, count(DISTINCT ts) AS k FROM market.candles WHERE exchange = $1",
        exchange_name,
    )
    assert (stored[0]["n"], stored[0]["k"]) == (1440, 1440)
    empties = query(
        "SELECT count(*) AS n FROM market.empty_intervals WHERE exchange = $1", exchange_name
    )
    assert empties[0]["n"] == 0  # healed minutes leave the empty list

    # repairing a complete partition asks nothing and writes nothing
    before = _klines_requests(fresh_emulator)
    idle = _meta(md.materialize(["candles_1m"], partition=key(DAY1), repair=True))
    assert (idle["rest_ranges"], idle["rows_inserted"]) == (0, 0)
    assert _klines_requests(fresh_emulator) == before


def test_minutes_the_exchange_keeps_empty_are_confirmed_and_not_asked_again(
    make_defs: Callable[..., MarketDefs], fresh_emulator: Emulator, exchange_name: str
) -> None:
    faults = install_kline_faults(fresh_emulator, "ETHUSDT")
    quiet = _minutes(DAY2, ("03:30", 3), ("12:00", 1))  # never traded: never served
    faults.withhold(quiet)
    md = make_defs(exchange_name, fresh_emulator)
    partition = key(DAY2, "ETH/USDT")

    md.materialize(["candles_1m"], partition=partition)
    first = md.check(partition)
    assert not first.passed  # one empty answer is not believed yet

    repair = _meta(md.materialize(["candles_1m"], partition=partition, repair=True))
    assert (repair["rest_ranges"], repair["rows_inserted"]) == (2, 0)
    assert repair["confirmed_empty_minutes"] == len(quiet)
    confirmed = md.check(partition)
    assert confirmed.passed
    assert confirmed.metadata["confirmed_empty_minutes"].value == len(quiet)

    before = _klines_requests(fresh_emulator)
    again = _meta(md.materialize(["candles_1m"], partition=partition, repair=True))
    assert again["rest_ranges"] == 0 and _klines_requests(fresh_emulator) == before


def test_a_day_never_asked_is_all_gap(
    make_defs: Callable[..., MarketDefs], synthetic_emulator: Emulator, exchange_name: str
) -> None:
    md = make_defs(exchange_name, synthetic_emulator)
    evaluation = md.check(key(DAY1))
    assert not evaluation.passed
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["missing_by_reason"] == {"never_asked": 1440}
    assert f"{DAY1}T00:00..2024-04-21T00:00" in str(meta["gaps"])


def test_ranged_repair_covers_every_day_of_the_range(
    make_defs: Callable[..., MarketDefs], fresh_emulator: Emulator, exchange_name: str
) -> None:
    first_day, last_day = DAY1, DAY2
    faults = install_kline_faults(fresh_emulator, "BTCUSDT")
    withheld = _minutes(first_day, ("06:00", 2)) + _minutes(last_day, ("18:30", 3))
    faults.withhold(withheld)
    md = make_defs(exchange_name, fresh_emulator)
    md.materialize(["candles_1m"], first=key(first_day), last=key(last_day))
    faults.heal()
    run = md.materialize(
        ["candles_1m"], first=key(first_day), last=key(last_day), repair=True, with_check=True
    )
    repair = {
        str(m.partition): {k: v.value for k, v in m.metadata.items()}
        for m in run.asset_materializations_for_node("candles_1m")
    }
    # each day's own repair: one range each, its own withheld minutes
    assert (repair[key(first_day)]["rest_ranges"], repair[key(first_day)]["rows_inserted"]) == (
        1,
        2,
    )
    assert (repair[key(last_day)]["rest_ranges"], repair[key(last_day)]["rows_inserted"]) == (1, 3)
    assert md.check(key(first_day)).passed and md.check(key(last_day)).passed
