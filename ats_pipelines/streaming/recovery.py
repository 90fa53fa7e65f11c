"""Trades the stream missed, fetched over REST, and what cannot be fetched handed to the
healer: what the service runs after a reconnect, a resume or a gap in trade ids (see ``ingest``
for the id tracking itself)."""

from __future__ import annotations

import logging
import time
from typing import Any

from ats_pipelines.exchange.client import ExchangeClient
from ats_pipelines.exchange.errors import PermanentExchangeError, RetriesExhausted
from ats_pipelines.streaming.config import StreamConfig
from ats_pipelines.streaming.emitter import Emitter
from ats_pipelines.streaming.gapfill import TradeGapFiller
from ats_pipelines.streaming.ingest import SymbolPipeline
from ats_pipelines.streaming.intake import TradeIntake
from ats_pipelines.streaming.symbols import SymbolRegistry

log = logging.getLogger("ats_pipelines.streaming.service")


class TradeRecovery:
    """Backfill after reconnects and resumes, refills of overdue trade ids, giving up."""

    def __init__(
        self,
        config: StreamConfig,
        symbols: SymbolRegistry,
        intake: TradeIntake,
        emitter: Emitter,
        trades_client: ExchangeClient,
        filler: TradeGapFiller,
    ) -> None:
        self.config, self.symbols, self.intake, self.emitter = config, symbols, intake, emitter
        self.trades_client, self.filler = trades_client, filler
        self.clock, self.healing, self.metrics = intake.clock, intake.healing, intake.metrics

    async def recover(
        self, p: SymbolPipeline, batch: list[dict[str, Any]], reconnects: int
    ) -> None:
        """After a reconnect (or a resume): fetch what the stream missed before applying
        ``batch`` (which may be empty: then everything up to now)."""
        p.seen_reconnects = reconnects
        tracker = p.tracker
        first_new = min(
            (int(t["id"]) for t in batch if str(t.get("id", "")).isdigit()), default=None
        )
        first_ts = min(
            (t["timestamp"] for t in batch if type(t.get("timestamp")) is int), default=None
        )
        before_ts = p.last_trade_ts
        if p.integer_ids and tracker is not None and tracker.hi is not None:
            upper = first_new - 1 if first_new is not None else None
            if upper is None or upper > tracker.hi:
                await self._backfill(p, tracker.hi + 1, upper, first_ts)
        elif before_ts is not None and p.integer_ids is False:
            self.intake.give_up(
                p,
                before_ts,
                first_ts or self.clock.now_ms(),
                "trade ids are not consecutive: a disconnect's gap cannot be fetched",
            )
        if before_ts is not None:  # compare the disconnect's bars with REST once committed
            self.healing.request(p.symbol, before_ts, first_ts or p.last_trade_ts or before_ts)
        p.pending_reconnect = False

    async def _backfill(
        self, p: SymbolPipeline, first: int, last: int | None, next_ts: int | None
    ) -> None:
        """Fetch ids ``first..last`` (``last=None``: up to now) and apply them; ids REST no
        longer serves are given up (their bars are healed)."""
        tracker = p.tracker
        assert tracker is not None
        if last is not None and last - first + 1 > self.config.max_backfill_trades:
            return  # the batch's own ids record the run as unfillable
        try:
            fetched = await self.filler.fetch(
                p.symbol, first, last, tracker.hi_ts, next_ts or self.clock.now_ms()
            )
        except (PermanentExchangeError, RetriesExhausted) as exc:
            log.warning("event=stream_backfill_failed symbol=%s error=%s", p.symbol, exc)
            fetched = []
        wanted = sorted(
            (
                (int(t["id"]), t)
                for t in fetched
                if str(t.get("id", "")).isdigit()
                and int(t["id"]) >= first
                and (last is None or int(t["id"]) <= last)
            ),
            key=lambda x: x[0],
        )
        lowest = wanted[0][0] if wanted else None
        if (lowest is not None and lowest > first) or (lowest is None and last is not None):
            lost_to = lowest - 1 if lowest is not None else last
            assert lost_to is not None
            upper_ts = wanted[0][1]["timestamp"] if wanted else (next_ts or self.clock.now_ms())
            self.intake.give_up(
                p,
                tracker.hi_ts if tracker.hi_ts is not None else upper_ts,
                upper_ts,
                f"trade ids {first}..{lost_to} are no longer served by REST",
            )
            tracker.hi, tracker.hi_ts = lost_to, upper_ts  # not waited for
        applied = self.intake.ingest(p, [t for _, t in wanted], time.time(), backfill=True)
        self.metrics.backfilled.inc(applied)
        log.info(
            "event=stream_backfilled symbol=%s from_id=%s to_id=%s fetched=%s applied=%s",
            p.symbol,
            first,
            last,
            len(fetched),
            applied,
        )

    async def refill(self, p: SymbolPipeline, patience_s: float | None = None) -> None:
        """Missing ids that did not turn up within the patience (default ``gap_patience_s``;
        0 at shutdown: a reordered trade still on its way is fetched rather than left
        missing): fetch, or give up on them."""
        tracker = p.tracker
        if tracker is None:
            return
        patience = self.config.gap_patience_s if patience_s is None else patience_s
        async with self.symbols.locks[p.symbol]:
            for run in tracker.overdue(time.time(), patience):
                try:
                    fetched = await self.filler.fetch(
                        p.symbol, run.first, run.last, run.ts_lo, run.ts_hi
                    )
                except (PermanentExchangeError, RetriesExhausted) as exc:
                    log.warning("event=stream_refill_failed symbol=%s error=%s", p.symbol, exc)
                    fetched = []
                wanted = [
                    t
                    for t in fetched
                    if str(t.get("id", "")).isdigit() and run.first <= int(t["id"]) <= run.last
                ]
                applied = self.intake.ingest(p, wanted, time.time(), backfill=True)
                self.metrics.backfilled.inc(applied)
                if any(i in tracker.missing for i in range(run.first, run.last + 1)):
                    tracker.give_up(run)
                    p.sync_hold()
                    self.intake.give_up(
                        p,
                        run.ts_lo,
                        run.ts_hi,
                        f"trade ids {run.first}..{run.last} missing from the stream and from REST",
                    )
            await self.emitter.emit(p, time.time())

    async def recover_later(self, p: SymbolPipeline) -> None:
        async with self.symbols.locks[p.symbol]:
            if p.pending_reconnect or self.trades_client.stats["reconnects"] != p.seen_reconnects:
                await self.recover(p, [], self.trades_client.stats["reconnects"])
            await self.emitter.emit(p, time.time())
