"""Order-book metrics and the local L2 book, rebuilt from real Binance captures (cryptofeed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ats_pipelines.lib.book import (
    METRIC_NAMES,
    BookMetrics,
    BookOutOfSync,
    L2Book,
    SequenceGap,
    book_metrics,
    book_metrics_batch,
    book_metrics_frame,
)

Capture = tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]


def _read_capture(testdata: Path, exchange: str) -> Capture:
    """REST snapshots by symbol, and the websocket payloads in arrival order."""
    folder = testdata / "cryptofeed"
    snapshots: dict[str, dict[str, Any]] = {}
    for line in (folder / f"{exchange}.http.0.0").read_text().splitlines():
        if not line.strip():
            continue
        url, rest = line.split(" -> ", 1)
        symbol = url.split("symbol=")[1].split("&")[0]
        snapshots[symbol] = json.loads(rest.split(": ", 1)[1])
    messages = []
    for line in (folder / f"{exchange}.ws.1.0").read_text().splitlines():
        if line.strip() and not line.startswith("wss://"):
            messages.append(json.loads(line.split(": ", 1)[1])["data"])
    return snapshots, messages


def _levels(raw: list[list[str]]) -> list[list[float]]:
    return [[float(p), float(s)] for p, s in raw]


def _same(a: float | None, b: float) -> bool:
    return (a is None and math.isnan(b)) or a == b


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    bids = [[100.0, 1.0], [99.0, 2.0], [96.0, 4.0], [94.0, 8.0]]
    asks = [[102.0, 3.0], [104.0, 1.0], [106.0, 5.0], [108.0, 9.0]]
    m = book_metrics(bids, asks)
    assert (m.mid, m.spread) == (101.0, 2.0)
    assert m.spread_bps == 2.0 / 101.0 * 10_000
    assert m.imbalance_1 == (1.0 - 3.0) / 4.0
    assert m.imbalance_5 == m.imbalance_10 == (15.0 - 18.0) / 33.0  # all four levels
    # ±5 % of 101 is [95.95, 106.05]: bids 100, 99, 96 and asks 102, 104, 106
    assert (m.bid_depth_5pct, m.ask_depth_5pct) == (7.0, 9.0)
    assert book_metrics(np.array(bids), np.array(asks)) == m


@pytest.mark.parametrize(("bids", "asks"), [([], [[1.0, 1.0]]), ([[1.0, 1.0]], []), ([], [])])
def test_empty_side_has_no_metrics(bids: list[list[float]], asks: list[list[float]]) -> None:
    assert book_metrics(bids, asks) == BookMetrics(*[None] * 8)
    batch = book_metrics_batch(
        np.array([[b[0] for b in bids] or [np.nan]]),
        np.array([[b[1] for b in bids] or [np.nan]]),
        np.array([[a[0] for a in asks] or [np.nan]]),
        np.array([[a[1] for a in asks] or [np.nan]]),
    )
    assert all(math.isnan(batch[name][0]) for name in METRIC_NAMES)


def test_zero_sizes_leave_imbalance_undefined() -> None:
    m = book_metrics([[1.0, 0.0]], [[2.0, 0.0]])
    assert m.imbalance_1 is None and m.mid == 1.5 and m.bid_depth_5pct == 0.0


# --- the local book on real Binance captures --------------------------------------------------


@pytest.mark.parametrize(("exchange", "futures"), [("BINANCE", False), ("BINANCE_FUTURES", True)])
def test_rebuild_matches_book_ticker(testdata: Path, exchange: str, futures: bool) -> None:
    """Snapshot + diffs must line up (0 gaps), and the best levels must equal bookTicker."""
    snapshots, messages = _read_capture(testdata, exchange)
    books: dict[str, L2Book] = {}
    for symbol, snap in snapshots.items():
        books[symbol] = L2Book(symbol, futures=futures)
        books[symbol].load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    best_after: dict[tuple[str, int], tuple[tuple[float, float], tuple[float, float]]] = {}
    for msg in messages:
        if msg.get("e") == "depthUpdate":
            book = books[msg["s"]]
            if book.apply_event(msg):
                assert book.best_bid is not None and book.best_ask is not None
                best_after[(msg["s"], msg["u"])] = (book.best_bid, book.best_ask)
    assert all(book.synced for book in books.values())
    assert sum(b.applied for b in books.values()) > 50
    assert sum(b.dropped for b in books.values()) > 0  # diffs older than the snapshot
    checked = 0
    for msg in messages:
        key = (msg.get("s"), msg.get("u"))
        if "A" in msg and key in best_after:  # a bookTicker at exactly a diff's final id
            bid, ask = best_after[key]  # type: ignore[index]
            assert bid == (float(msg["b"]), float(msg["B"])), key
            assert ask == (float(msg["a"]), float(msg["A"])), key
            checked += 1
    assert checked >= 20


def test_gap_is_detected_and_resync_recovers(testdata: Path) -> None:
    snapshots, messages = _read_capture(testdata, "BINANCE")
    snap = snapshots["NKNUSDT"]
    diffs = [
        m
        for m in messages
        if m.get("e") == "depthUpdate" and m["s"] == "NKNUSDT" and m["u"] > snap["lastUpdateId"]
    ]
    book = L2Book("NKNUSDT")
    book.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    for msg in diffs[:5]:
        assert book.apply_event(msg)
    with pytest.raises(SequenceGap) as gap:
        book.apply_event(diffs[6])  # diffs[5] lost in transit
    assert gap.value.expected == f"U={diffs[5]['U']}" and gap.value.got == f"U={diffs[6]['U']}"
    assert "NKNUSDT" in str(gap.value) and not book.synced
    with pytest.raises(BookOutOfSync, match="NKNUSDT"):
        book.apply_event(diffs[7])
    with pytest.raises(BookOutOfSync):
        book.snapshot()
    # resync: a snapshot taken at diffs[6]'s u, then the stream continues
    rebuilt = L2Book("NKNUSDT")
    rebuilt.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    for msg in diffs[:7]:
        rebuilt.apply_event(msg)
    top_bids, top_asks = rebuilt.top(5_000)
    book.load_snapshot(diffs[6]["u"], top_bids, top_asks)
    for msg in diffs[7:]:
        assert book.apply_event(msg) and rebuilt.apply_event(msg)
    assert book.top(5_000) == rebuilt.top(5_000)


def test_futures_gap_uses_previous_final_id(testdata: Path) -> None:
    snapshots, messages = _read_capture(testdata, "BINANCE_FUTURES")
    symbol, snap = next(iter(snapshots.items()))
    diffs = [
        m
        for m in messages
        if m.get("e") == "depthUpdate" and m["s"] == symbol and m["u"] >= snap["lastUpdateId"]
    ]
    book = L2Book(symbol, futures=True)
    book.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    book.apply_event(diffs[0])
    with pytest.raises(SequenceGap, match=f"pu={diffs[1]['pu']}"):
        book.apply_event(diffs[2])


def test_first_diff_must_bridge_the_snapshot(testdata: Path) -> None:
    snapshots, messages = _read_capture(testdata, "BINANCE")
    snap = snapshots["BLZETH"]
    later = [
        m
        for m in messages
        if m.get("e") == "depthUpdate" and m["s"] == "BLZETH" and m["u"] > snap["lastUpdateId"]
    ]
    book = L2Book("BLZETH")
    book.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    with pytest.raises(SequenceGap, match="first diff"):
        book.apply_event(later[1])  # the bridging diff later[0] is missing


def test_unsynced_book_refuses_diffs() -> None:
    with pytest.raises(BookOutOfSync, match="no snapshot"):
        L2Book("X").apply(1, 2, [], [])


def test_levels_update_and_delete() -> None:
    book = L2Book("X")
    book.load_snapshot(10, [["100", "1"], ["99", "2"]], [["101", "1"], ["102", "3"]])
    assert book.apply(11, 11, [["100", "0"], ["98.5", "4"], ["97", "0"]], [["101", "5"]])
    assert book.top(2) == ([[99.0, 2.0], [98.5, 4.0]], [[101.0, 5.0], [102.0, 3.0]])
    assert not book.apply(5, 11, [["1", "1"]], [])  # stale: dropped
    assert book.dropped == 1 and book.best_bid == (99.0, 2.0)


# --- scalar == vectorised on real snapshots ---------------------------------------------------


def _real_snapshots(testdata: Path, n: int) -> list[tuple[list[list[float]], list[list[float]]]]:
    """Top-n books after every applied diff of the spot capture."""
    snapshots, messages = _read_capture(testdata, "BINANCE")
    books = {s: L2Book(s) for s in snapshots}
    for s, snap in snapshots.items():
        books[s].load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    out = []
    for msg in messages:
        if msg.get("e") == "depthUpdate" and books[msg["s"]].apply_event(msg):
            out.append(books[msg["s"]].top(n))
    return out


@pytest.mark.parametrize("n", [1, 3, 10, 25])
def test_batch_equals_scalar_on_real_books(testdata: Path, n: int) -> None:
    books = _real_snapshots(testdata, n)
    assert len(books) > 50

    def grid(side: int, col: int) -> np.ndarray:
        out = np.full((len(books), n), np.nan)
        for i, book in enumerate(books):
            levels = book[side]
            out[i, : len(levels)] = [lvl[col] for lvl in levels]
        return out

    batch = book_metrics_batch(grid(0, 0), grid(0, 1), grid(1, 0), grid(1, 1))
    for i, (bids, asks) in enumerate(books):
        scalar = book_metrics(bids, asks)
        for name in METRIC_NAMES:
            assert _same(getattr(scalar, name), float(batch[name][i])), (i, name)


def test_frame_and_tardis_snapshots(testdata: Path) -> None:
    raw = pl.read_csv(
        testdata / "nautilus_trader" / "tardis" / "binance-futures_book_snapshot_25_BTCUSDT.csv"
    )
    levels = range(25)
    frame = raw.select(
        pl.concat_list([f"bids[{i}].price" for i in levels]).alias("bid_prices"),
        pl.concat_list([f"bids[{i}].amount" for i in levels]).alias("bid_sizes"),
        pl.concat_list([f"asks[{i}].price" for i in levels]).alias("ask_prices"),
        pl.concat_list([f"asks[{i}].amount" for i in levels]).alias("ask_sizes"),
    )
    # ragged books: drop a different number of levels per row
    frame = (
        frame.with_row_index("i")
        .with_columns(
            pl.col("bid_prices").list.head(25 - pl.col("i")),
            pl.col("bid_sizes").list.head(25 - pl.col("i")),
        )
        .drop("i")
    )
    got = book_metrics_frame(frame)
    for row in got.iter_rows(named=True):
        bids = list(zip(row["bid_prices"], row["bid_sizes"], strict=True))
        asks = list(zip(row["ask_prices"], row["ask_sizes"], strict=True))
        scalar = book_metrics(bids, asks)
        assert [row[name] for name in METRIC_NAMES] == list(scalar)
        assert row["spread"] > 0 and -1 <= row["imbalance_10"] <= 1
    assert got["bid_depth_5pct"].null_count() == 0


def test_l2_metrics_use_the_whole_band(testdata: Path) -> None:
    snapshots, _ = _read_capture(testdata, "BINANCE")
    snap = snapshots["NKNUSDT"]
    book = L2Book("NKNUSDT")
    book.load_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    bids, asks = _levels(snap["bids"]), _levels(snap["asks"])
    assert book.metrics() == book_metrics(bids, asks)
    shot = book.snapshot(20)
    assert len(shot.bid_prices) == 20 and shot.sequence == snap["lastUpdateId"]
    assert shot.bid_prices == sorted(shot.bid_prices, reverse=True)
    assert shot.ask_prices == sorted(shot.ask_prices) and shot.bid_prices[0] < shot.ask_prices[0]
    depth = shot.metrics.bid_depth_5pct
    assert depth is not None and depth > sum(shot.bid_sizes)  # the band reaches past 20 levels
