"""Gap healing: stored bars against the exchange's REST klines, missing or wrong ones fixed.

For each timeframe and window, only buckets that are over (end <= window end) are compared.
A kline with trades and no stored bar is *missing*; a stored bar whose prices, trade count or
volumes differ from the kline is *wrong* (volumes compare at a relative 1e-9, which no missing
trade stays under while float sums of the same decimals always do; a null column in the stored
row is not compared). Both are written from the kline with ``source = 'heal'``. Klines without
trades are skipped: the stream never invents bars for empty intervals.

Binance klines carry quote volume, trade count and taker-buy volume; other exchanges' OHLCV
through ccxt does not, and those columns stay null in healed rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ats_pipelines.db.bulk import bulk_write
from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.retry import call_with_retry
from ats_pipelines.lib.timeframes import bucket_end_ms, floor_ms, parse_timeframe
from ats_pipelines.streaming.rows import CANDLE_VALUES, candles_table, utc, vwap

log = logging.getLogger(__name__)
SOURCE = "heal"
FAR_PAST = -(2**62)
REL_TOL = 1e-9
PAGE = 1000


@dataclass
class HealResult:
    """What one pass compared and wrote, per timeframe."""

    compared: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    written_bars: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)

    @property
    def written(self) -> int:
        return sum(self.inserted.values()) + sum(self.updated.values())

    def merge(self, other: HealResult) -> None:
        for name in ("compared", "inserted", "updated"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for tf, n in theirs.items():
                mine[tf] = mine.get(tf, 0) + n


def kline_values(row: Sequence[Any]) -> dict[str, Any]:
    """A Binance REST kline (or a ccxt OHLCV list) as stored bar values."""
    o, h, lo, c, v = (float(x) for x in row[1:6])
    quote = float(row[7]) if len(row) > 7 else None
    count = int(row[8]) if len(row) > 8 else None
    buy = float(row[9]) if len(row) > 9 else None
    return {
        "ts": int(row[0]),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "quote_volume": quote,
        "trade_count": count,
        "vwap": vwap(quote, v, c, lo, h),
        "taker_buy_volume": buy,
    }


async def fetch_klines(
    client: ExchangeClient, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    """Bars opening in ``[start_ms, end_ms)`` from REST, full Binance fields when available."""
    exchange = client.exchange
    if client.id != "binance":
        rows = await client.fetch_ohlcv_range(symbol, timeframe, start_ms, end_ms)
        return [kline_values(r) for r in rows]
    await client.load_markets()
    market_id = exchange.market(symbol)["id"]
    out: list[dict[str, Any]] = []
    since = start_ms
    while since < end_ms:
        request = {
            "symbol": market_id,
            "interval": timeframe,
            "startTime": since,
            "endTime": end_ms - 1,
            "limit": PAGE,
        }
        page = await call_with_retry(
            lambda r=request: exchange.publicGetKlines(r),
            what=f"{client.id} klines {symbol} {timeframe} since={since}",
            policy=client.policy,
            rng=client.rng,
            sleep=client.sleep,
        )
        fresh = [kline_values(r) for r in page if since <= int(r[0]) < end_ms]
        if not fresh:
            break
        out.extend(fresh)
        since = bucket_end_ms(fresh[-1]["ts"], timeframe)
        if len(page) < PAGE:
            break
    return out


def _close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


def differs(stored: Mapping[str, Any], kline: Mapping[str, Any]) -> list[str]:
    """Names of the columns where ``stored`` disagrees with ``kline`` (nulls not compared)."""
    out = [
        name
        for name in ("open", "high", "low", "close")
        if stored[name] is not None and stored[name] != kline[name]
    ]
    if (
        stored["trade_count"] is not None
        and kline["trade_count"] is not None
        and stored["trade_count"] != kline["trade_count"]
    ):
        out.append("trade_count")
    for name in ("volume", "quote_volume", "taker_buy_volume"):
        if (
            stored[name] is not None
            and kline[name] is not None
            and not _close(stored[name], kline[name])
        ):
            out.append(name)
    return out


async def stored_bars(
    conn: asyncpg.Connection, exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> dict[int, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT ts, open, high, low, close, volume, quote_volume, trade_count, "
        "taker_buy_volume, source FROM market.candles WHERE exchange = $1 AND symbol = $2 "
        "AND timeframe = $3 AND ts >= $4 AND ts < $5",
        exchange,
        symbol,
        timeframe,
        utc(start_ms),
        utc(end_ms),
    )
    return {int(r["ts"].timestamp() * 1000): dict(r) for r in rows}


async def heal(
    conn: asyncpg.Connection,
    client: ExchangeClient,
    *,
    exchange: str,
    symbol: str,
    windows: Mapping[str, tuple[int, int]],
) -> HealResult:
    """Compare and fix each ``timeframe -> (start_ms, end_ms)`` window; buckets must be over
    by ``end_ms``. ``exchange`` is the stored name, ``client`` the exchange asked."""
    result = HealResult()
    for timeframe, (start, end) in windows.items():
        first = floor_ms(start, timeframe)
        last = floor_ms(end, timeframe)  # buckets opening before this are over by `end`
        if last <= first:
            continue
        klines = [
            k
            for k in await fetch_klines(client, symbol, timeframe, first, last)
            if k["volume"] > 0 and (k["trade_count"] is None or k["trade_count"] > 0)
        ]
        stored = await stored_bars(conn, exchange, symbol, timeframe, first, last)
        missing, wrong = [], []
        for k in klines:
            have = stored.get(k["ts"])
            if have is None:
                missing.append(k)
            elif bad := differs(have, k):
                wrong.append(k)
                log.warning(
                    "event=heal_wrong_bar exchange=%s symbol=%s timeframe=%s ts=%s "
                    "columns=%s stored_source=%s",
                    exchange,
                    symbol,
                    timeframe,
                    utc(k["ts"]).isoformat(),
                    ",".join(bad),
                    have["source"],
                )
        result.compared[timeframe] = len(klines)
        if missing or wrong:
            fixes = missing + wrong
            table = candles_table(exchange, symbol, [timeframe] * len(fixes), fixes, SOURCE)
            await bulk_write(
                conn,
                "market.candles",
                table,
                on_conflict="update",
                update_columns=[*CANDLE_VALUES, "source"],
            )
            result.inserted[timeframe] = len(missing)
            result.updated[timeframe] = len(wrong)
            result.written_bars += [(timeframe, v) for v in fixes]
            log.info(
                "event=heal_written exchange=%s symbol=%s timeframe=%s start=%s end=%s "
                "missing=%s wrong=%s",
                exchange,
                symbol,
                timeframe,
                utc(first).isoformat(),
                utc(last).isoformat(),
                len(missing),
                len(wrong),
            )
    return result


# --- what to heal, and when ------------------------------------------------------------------


@dataclass
class HealRequest:
    """Buckets around ``[lo, hi]`` (exchange ms) to compare once they are committed."""

    symbol: str
    lo: int
    hi: int
    done_to: dict[str, int] = field(default_factory=dict)


@dataclass
class HealWork:
    """One symbol's windows for one pass (``request``: the request it advances, if any)."""

    symbol: str
    windows: dict[str, tuple[int, int]]
    request: HealRequest | None = None


class HealPlanner:
    """Heal requests (after a disconnect, a lost run of trades, a fresh start) and the
    periodic look back, turned into windows of buckets that are over and committed.

    A request is advanced only by :meth:`done` after its pass succeeded, so a pass that fails
    (the database away) is simply planned again. Periodic windows never reach before the
    stream's first trade: history is the market-data backfill's job.
    """

    def __init__(self, timeframes: Sequence[str], lookback_bars: int) -> None:
        self.timeframes = list(timeframes)
        self.lookback_bars = lookback_bars
        self.requests: list[HealRequest] = []

    def request(self, symbol: str, lo: int, hi: int) -> None:
        self.requests.append(HealRequest(symbol, lo, hi))

    def plan(
        self, committed_to: Mapping[str, int], coverage: Mapping[str, int | None], periodic: bool
    ) -> list[HealWork]:
        """``committed_to[symbol]``: bars opening before it are committed (or ``FAR_PAST``)."""
        work = []
        for request in self.requests:
            upto = committed_to.get(request.symbol, FAR_PAST)
            windows = {}
            for tf in self.timeframes:
                start = max(floor_ms(request.lo, tf), request.done_to.get(tf, FAR_PAST))
                end = (
                    min(bucket_end_ms(request.hi, tf), floor_ms(upto, tf))
                    if upto > FAR_PAST
                    else FAR_PAST
                )
                if end > start:
                    windows[tf] = (start, end)
            if windows:
                work.append(HealWork(request.symbol, windows, request))
        if periodic:
            for symbol, upto in committed_to.items():
                since = coverage.get(symbol)
                if upto <= FAR_PAST or since is None:
                    continue
                windows = {}
                for tf in self.timeframes:
                    ms = parse_timeframe(tf).ms or 31 * 86_400_000
                    start = floor_ms(upto - self.lookback_bars * ms, tf)
                    windows[tf] = (max(start, floor_ms(since, tf)), upto)
                work.append(HealWork(symbol, windows))
        return work

    def done(self, work: HealWork) -> None:
        request = work.request
        if request is None:
            return
        for tf, (_, end) in work.windows.items():
            request.done_to[tf] = max(end, request.done_to.get(tf, FAR_PAST))
        if (
            all(
                request.done_to.get(tf, FAR_PAST) >= bucket_end_ms(request.hi, tf)
                for tf in self.timeframes
            )
            and request in self.requests
        ):
            self.requests.remove(request)
