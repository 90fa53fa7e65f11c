"""The quality report builds offline from a real database and opens in a real browser
(headless Chromium, as installed by `make setup`): the summary table says what happened."""

from __future__ import annotations

import re
import subprocess
import tempfile
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

import polars as pl

from ats_pipelines.db.connect import connection
from ats_pipelines.quality.build import gather_report, write_report
from ats_pipelines.quality.policy import QualityPolicy
from tests.quality.conftest import NOW, migrated_database, run_sync
from tests.quality.test_checkset import WINDOW, store

CHROMIUM = "/usr/bin/chromium"
GOOD, BAD = "goodex", "badex"


def rendered_dom(page: Path) -> str:
    """The DOM after Chromium loaded ``page`` (scripts run; every host name unresolvable,
    so nothing can leave the machine even if the page asked)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def table_rows(dom: str, table_id: str) -> list[list[str]]:
    """Rows of ``<table id=table_id>`` as raw cell HTML."""
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S)
    assert match, f"no table #{table_id} in the rendered page"
    body = match.group(1).split("<tbody>", 1)[1]
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def text(cell: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def test_report_renders_the_summary_in_a_browser(
    make_database: object,
    tmp_path: Path,
    xrp_candles: pl.DataFrame,
    xrp_empty_minutes: pl.DataFrame,
    xrp_trades: pl.DataFrame,
) -> None:
    url = migrated_database(make_database, "ats_quality_report")
    policy = QualityPolicy()
    index = pl.int_range(pl.len())
    misaligned = xrp_candles.with_columns(
        pl.when(index.is_in([10, 20]))
        .then(pl.col("ts") + timedelta(seconds=30))
        .otherwise(pl.col("ts"))
        .alias("ts")
    )

    async def build(run_id: str, now: datetime) -> object:
        async with connection(url) as conn:
            return await gather_report(conn, now=now, policy=policy, run_id=run_id, window=WINDOW)

    run_sync(
        store(
            url,
            GOOD,
            xrp_candles.drop("exchange"),
            empty=xrp_empty_minutes.drop("exchange"),
            trades=xrp_trades.drop("exchange"),
        )
    )
    first = run_sync(build("report-1", NOW))
    run_sync(store(url, BAD, misaligned.drop("exchange"), empty=xrp_empty_minutes.drop("exchange")))
    data = run_sync(build("report-2", NOW + timedelta(hours=1)))
    # no stream ever ran here, so freshness fails; every suite of the first build passes
    verdicts = {(e.spec.asset, e.label): e.passed for e in first.checks.entries}  # type: ignore
    assert verdicts == {
        ("candles_1m", GOOD): True,
        ("market.trades", GOOD): True,
        ("stream_bars", "stream"): False,
    }
    report = write_report(data, tmp_path / "quality")  # type: ignore[arg-type]

    page = report.index.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert report.data_docs is not None and report.data_docs.is_file()
    pages = list((report.data_docs.parent / "validations").rglob("*.html"))
    assert len(pages) >= 3  # candles rows, candles coverage, trades (per exchange)
    assert any("_ts_offset_ms" in p.read_text() and "Failed" in p.read_text() for p in pages)

    dom = rendered_dom(report.index)
    rows = {(text(r[0]), text(r[1])): r for r in table_rows(dom, "summary")}
    candles = rows[("candles_1m", "candles_suite")]
    assert text(candles[2]) == "ERROR · blocking"
    assert text(candles[3]) == "FAIL"
    assert text(candles[5]) == f"failing: {BAD}"
    assert text(candles[6]) == str(2 * xrp_candles.height)
    assert text(candles[8]) == "ohlcv.ts_aligned"
    assert text(candles[9]) == "1/2"
    assert re.findall(r'class="t (ok|bad)"', candles[10]) == ["ok", "bad"]
    trades = rows[("market.trades", "trades_suite")]
    assert [text(c) for c in (trades[3], trades[5], trades[6])] == ["PASS", "1 evaluated", "12477"]
    assert text(rows[("stream_bars", "bars_fresh")][3]) == "FAIL"  # no stream ever beat
    verdict = re.search(r"<span id=\"verdict\">(.*?)</span>", dom)
    assert verdict and verdict.group(1) == f"{len(rows) - 2} of {len(rows)} checks passing"

    scores = {
        (text(r[1]), text(r[2]), text(r[3])): [text(c) for c in r]
        for r in table_rows(dom, "scores")
    }
    good = scores[(GOOD, "XRP/ETH", "rest")]
    assert good[4:8] == ["1.000", "0.000", "1.000", "0.800"]  # complete, stale, valid
    assert good[8] == "0.800"  # two reports of the same window: one score, replaced
    bad = scores[(BAD, "XRP/ETH", "rest")]
    assert float(bad[4]) < 1.0 and float(bad[6]) < 1.0  # misaligned: missing and invalid

    assert "ohlcv.ts_aligned" in dom and "goodex" not in dom.split('id="failures"')[1]
    assert (tmp_path / "quality" / "summary.md").read_text().count("| FAIL |") == 2
    assert text(candles[4]) == (NOW + timedelta(hours=1)).isoformat(timespec="seconds")
