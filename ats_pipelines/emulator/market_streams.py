"""Binance's snapshot-like streams: tickers, book tickers and partial depth.

Unlike trades and diffs these are not drained from the source: each is the market's state,
sent on Binance's cadence (exchange time): ``@miniTicker``/``@ticker`` and their all-market
``!miniTicker@arr``/``!ticker@arr`` every 1000 ms, ``@bookTicker`` whenever the best bid or ask
changes, ``@depth<5|10|20>`` every 1000 ms (``@100ms``: every 100 ms). Field names and order
follow Binance's websocket stream documentation; spot book tickers and partial depth carry no
event time, as on Binance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from ats_pipelines.emulator.tickers import DAY_MS, ZERO, top_of_book, window_stats

if TYPE_CHECKING:
    from ats_pipelines.emulator.source import MarketSource
    from ats_pipelines.emulator.streams import Stream

TICKER_PERIOD_MS = 1_000
ALL_MARKETS = "*"  # the symbol of ``!…@arr`` streams
SNAPSHOT_KINDS = frozenset({"miniTicker", "ticker", "bookTicker", "partialDepth"})
_SEP = (",", ":")


def mini_ticker_event(stats: dict[str, object], now: int) -> dict[str, object]:
    return {
        "e": "24hrMiniTicker",
        "E": now,
        "s": stats["symbol"],
        "c": stats["lastPrice"],
        "o": stats["openPrice"],
        "h": stats["highPrice"],
        "l": stats["lowPrice"],
        "v": stats["volume"],
        "q": stats["quoteVolume"],
    }


def ticker_event(stats: dict[str, object], book: dict[str, str], now: int) -> dict[str, object]:
    return {
        "e": "24hrTicker",
        "E": now,
        "s": stats["symbol"],
        "p": stats["priceChange"],
        "P": stats["priceChangePercent"],
        "w": stats["weightedAvgPrice"],
        "x": stats["openPrice"],
        "c": stats["lastPrice"],
        "Q": "0.00000000",
        "b": book["bidPrice"],
        "B": book["bidQty"],
        "a": book["askPrice"],
        "A": book["askQty"],
        "o": stats["openPrice"],
        "h": stats["highPrice"],
        "l": stats["lowPrice"],
        "v": stats["volume"],
        "q": stats["quoteVolume"],
        "O": stats["openTime"],
        "C": stats["closeTime"],
        "F": stats["firstId"],
        "L": stats["lastId"],
        "n": stats["count"],
    }


class SnapshotStreams:
    """Decides, per tick, which snapshot streams are due and encodes them."""

    def __init__(self, sources: dict[str, MarketSource]) -> None:
        self.sources = sources
        self._due: dict[tuple[str, str], int] = {}  # (symbol or *, kind) -> next send time
        self._book_sent: dict[str, tuple[str, str, str, str]] = {}
        self.sent_by_kind: dict[str, int] = {}

    def _is_due(self, key: tuple[str, str], now: int, period_ms: int) -> bool:
        due = self._due.get(key)
        if due is not None and now < due:
            return False
        self._due[key] = now // period_ms * period_ms + period_ms
        return True

    def events(self, symbol_id: str, streams: list[Stream], now: int) -> list[tuple[Stream, str]]:
        """The frames due now for one symbol's snapshot streams (or the ``*`` streams)."""
        out: list[tuple[Stream, str]] = []
        stats_cache: dict[str, dict[str, object]] = {}

        def stats(s: str) -> dict[str, object]:
            if s not in stats_cache:
                stats_cache[s] = window_stats(s, self.sources[s], now, DAY_MS)
            return stats_cache[s]

        for stream in streams:
            frame = self._frame(symbol_id, stream, now, stats)
            if frame is not None:
                out.append((stream, frame))
                self.sent_by_kind[stream.kind] = self.sent_by_kind.get(stream.kind, 0) + 1
        return out

    def _frame(
        self,
        symbol_id: str,
        stream: Stream,
        now: int,
        get_stats: Callable[[str], dict[str, object]],  # a per-tick cache of the symbol
    ) -> str | None:
        if stream.kind in ("miniTicker", "ticker"):
            if not self._is_due((symbol_id, stream.name), now, TICKER_PERIOD_MS):
                return None
            symbols = list(self.sources) if symbol_id == ALL_MARKETS else [symbol_id]
            payloads = [self._ticker(stream.kind, s, get_stats(s), now) for s in symbols]
            body = payloads if symbol_id == ALL_MARKETS else payloads[0]
            return json.dumps(body, separators=_SEP)
        if stream.kind == "bookTicker":
            return self._book_ticker(symbol_id, now)
        if stream.kind == "partialDepth":
            period = 100 if stream.interval.endswith("@100ms") else 1000
            if not self._is_due((symbol_id, stream.name), now, period):
                return None
            levels = int(stream.interval.split("@")[0])
            book = self.sources[symbol_id].depth(symbol_id, levels, now)
            return json.dumps(
                {
                    "lastUpdateId": book.last_update_id,
                    "bids": [list(x) for x in book.bids],
                    "asks": [list(x) for x in book.asks],
                },
                separators=_SEP,
            )
        return None

    def _ticker(self, kind: str, symbol_id: str, stats: dict[str, object], now: int) -> object:
        if kind == "miniTicker":
            return mini_ticker_event(stats, now)
        return ticker_event(stats, top_of_book(self.sources[symbol_id], symbol_id, now), now)

    def _book_ticker(self, symbol_id: str, now: int) -> str | None:
        book = self.sources[symbol_id].depth(symbol_id, 1, now)
        bid = book.bids[0] if book.bids else (ZERO, ZERO)
        ask = book.asks[0] if book.asks else (ZERO, ZERO)
        key = (bid[0], bid[1], ask[0], ask[1])
        if self._book_sent.get(symbol_id) == key:
            return None
        self._book_sent[symbol_id] = key
        return json.dumps(
            {
                "u": book.last_update_id,
                "s": symbol_id,
                "b": key[0],
                "B": key[1],
                "a": key[2],
                "A": key[3],
            },
            separators=_SEP,
        )

    def forget(self, symbol_id: str) -> None:
        """Nobody listens to the symbol any more."""
        self._book_sent.pop(symbol_id, None)
        for key in [k for k in self._due if k[0] == symbol_id]:
            del self._due[key]
