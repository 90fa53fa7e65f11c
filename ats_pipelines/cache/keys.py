"""The hot cache's key layout and value encoding: the one contract between the streaming
service (writer) and the read API (``get_inference_data``, reader).

Keys (``{exchange}`` a ccxt id, ``{symbol}`` ccxt unified as is, e.g. ``BTC/USDT``):

* ``ats:bars:{exchange}:{symbol}:{timeframe}`` — sorted set of the latest **final** bars:
  score = bar open time in epoch ms, member = :func:`encode_bar` JSON. At most
  ``BARS_KEPT`` members (oldest trimmed). A bar written twice (a replay) replaces itself.
* ``ats:bar:open:{exchange}:{symbol}:{timeframe}`` — string: the provisional bar of the bucket
  still open (same JSON, ``"final": false``); absent until the stream has seen a trade.
* ``ats:book:{exchange}:{symbol}`` — hash of the latest book metrics: ``ts`` (epoch ms of the
  exchange update), ``sequence``, ``mid``, ``spread``, ``spread_bps``, ``imbalance_1``,
  ``imbalance_5``, ``imbalance_10``, ``bid_depth_5pct``, ``ask_depth_5pct`` (decimal strings;
  an undefined metric is the empty string).
* ``ats:stream:{shard}`` — hash: ``last_beat`` (epoch ms), ``symbols`` (comma-separated), the
  shard's liveness for readers that do not query the database.
* ``ats:events:bars:{exchange}:{timeframe}`` — Redis Stream of bar-commit events (writer: the
  streaming service, after the bars' commit; reader: the live signal service). One entry per
  committed final bar, keys only (``cache.events.BarEvent``): the bar itself is read from the
  database. Trimmed to about ``EVENTS_KEPT`` entries.

Every value is plain JSON or strings, so any Redis client (or ``redis-cli``) can read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ats_pipelines.lib.tables import BOOK_METRICS, CANDLES

PREFIX = "ats"
BARS_KEPT = 1_000
BAR_FIELDS = ("ts", *CANDLES.values)  # a bar's stored values (lib/tables.py)
BOOK_FIELDS = ("ts", "sequence", *BOOK_METRICS)


def bars_key(exchange: str, symbol: str, timeframe: str) -> str:
    return f"{PREFIX}:bars:{exchange}:{symbol}:{timeframe}"


def open_bar_key(exchange: str, symbol: str, timeframe: str) -> str:
    return f"{PREFIX}:bar:open:{exchange}:{symbol}:{timeframe}"


def book_key(exchange: str, symbol: str) -> str:
    return f"{PREFIX}:book:{exchange}:{symbol}"


def stream_key(shard: str) -> str:
    return f"{PREFIX}:stream:{shard}"


def bar_events_key(exchange: str, timeframe: str) -> str:
    return f"{PREFIX}:events:bars:{exchange}:{timeframe}"


EVENTS_KEPT = 100_000


def encode_bar(bar: Mapping[str, Any], *, final: bool = True, source: str = "stream") -> str:
    """One bar as compact JSON: ``ts`` in epoch ms plus the ``BAR_FIELDS`` values."""
    body = {name: bar[name] for name in BAR_FIELDS}
    body["final"] = final
    body["source"] = source
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def decode_bar(text: str | bytes) -> dict[str, Any]:
    """The dict :func:`encode_bar` wrote (``ts`` epoch ms, floats, ``final``, ``source``)."""
    return json.loads(text)


def encode_book(values: Mapping[str, Any]) -> dict[str, str]:
    """Book metrics as a Redis hash mapping (``None`` -> empty string)."""
    return {
        name: ""
        if values.get(name) is None
        else repr(values[name])
        if isinstance(values[name], float)
        else str(values[name])
        for name in BOOK_FIELDS
    }


def decode_book(mapping: Mapping[str | bytes, str | bytes]) -> dict[str, float | int | None]:
    """The hash :func:`encode_book` wrote, back to numbers (``ts``/``sequence`` as int)."""
    out: dict[str, float | int | None] = {}
    for raw_key, raw_value in mapping.items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
        if value == "":
            out[key] = None
        elif key in ("ts", "sequence"):
            out[key] = int(value)
        else:
            out[key] = float(value)
    return out
