"""A ccxt.pro exchange whose websocket clients survive malformed frames.

ccxt's websocket client decodes each frame and hands it to the exchange's handler inside a
callback of its receive loop; a frame that is not JSON (or that the handler chokes on) raises
there and the loop silently stops: the client then waits forever. The emulator's malformed-frame
fault reproduces this with stock ccxt. Here every frame is first checked by
:func:`~ats_pipelines.exchange.parsing.check_binance_frame`; a bad one is logged with the
rule it broke, counted, and skipped, and anything a handler raises is contained the same way.
ccxt itself is not modified: the subclass only wraps the frame callback of clients it creates.
A text frame is parsed once (the check's parse is handed to the exchange's message callback,
which is all ccxt's own frame handler does with it), which halves JSON work per trade.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import cache
from typing import Any

import ccxt.pro as ccxtpro

from ats_pipelines.exchange.errors import ExchangeDataError
from ats_pipelines.exchange.parsing import check_binance_frame

log = logging.getLogger(__name__)


@cache
def hardened_class(exchange_id: str) -> type[Any]:
    """``ccxt.pro.<exchange_id>`` with frame checking on its websocket clients."""
    base = getattr(ccxtpro, exchange_id, None)
    if base is None:
        raise ValueError(f"ccxt.pro has no exchange {exchange_id!r}")

    def client(self: Any, url: str) -> Any:
        ws_client = base.client(self, url)
        if not getattr(ws_client, "_ats_guarded", False):
            original = ws_client.handle_text_or_binary_message
            where = f"{self.id} {url} frame"

            def guarded(data: Any) -> None:
                try:
                    if isinstance(data, str) and not ws_client.verbose:
                        # what ccxt's handler does with a text frame, minus parsing it twice
                        message = check_binance_frame(data, where)
                        ws_client.on_message_callback(ws_client, message)
                        return
                    if isinstance(data, str | bytes):
                        check_binance_frame(data, where)
                    original(data)
                except ExchangeDataError as exc:
                    self.rejected_frames[exc.rule] += 1
                    log.warning(
                        "event=ws_frame_rejected exchange=%s url=%s error=%s", self.id, url, exc
                    )
                except Exception as exc:  # a handler must not stop the receive loop
                    self.rejected_frames["handler_error"] += 1
                    log.warning(
                        "event=ws_frame_handler_failed exchange=%s url=%s error=%r frame=%r",
                        self.id,
                        url,
                        exc,
                        str(data)[:160],
                    )

            ws_client.handle_text_or_binary_message = guarded
            ws_client._ats_guarded = True
        return ws_client

    def init(self: Any, config: dict[str, Any] | None = None) -> None:
        base.__init__(self, config or {})
        self.rejected_frames = Counter()

    return type(f"Hardened{base.__name__}", (base,), {"client": client, "__init__": init})
