"""Resolving the symbol part of a file name to a ccxt unified symbol.

Names with separators (``ETH_BTC``, ``ETH-USDT``, freqtrade's ``XRP_USDT_USDT``) have one
structural reading. Names without (``BTCUSDT``) have several possible splits, so they are only
resolved against the exchange's market list, never by guessing; with a list configured, every
symbol must be on it. The list is an input: a JSON file (a list of symbols, ``{exchange:
[symbols]}``, or a ccxt ``markets`` dict keyed by symbol) or a set handed over by code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SEPARATORS = re.compile(r"[_\-/:.@$+ ]")
ANY_EXCHANGE = "*"


class MarketListError(ValueError):
    """The market list file cannot be read; the message names it."""


@dataclass(frozen=True)
class Resolution:
    """A resolved symbol, or the reason there is none (and the candidates when ambiguous)."""

    symbol: str | None
    method: str
    reason: str | None = None
    candidates: tuple[str, ...] = ()


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", text).upper()


def _is_derivative(symbol: str) -> bool:
    return ":" in symbol


@dataclass(frozen=True)
class MarketCatalog:
    """Unified symbols per exchange id; ``*`` holds symbols that apply to every exchange."""

    symbols: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def for_exchange(self, exchange: str) -> frozenset[str] | None:
        own = self.symbols.get(exchange)
        shared = self.symbols.get(ANY_EXCHANGE)
        if own is None and shared is None:
            return None
        return (own or frozenset()) | (shared or frozenset())

    def resolve(self, raw: str, exchange: str, market_type: str) -> Resolution:
        """Resolve the symbol text of a file name for ``exchange`` and ``market_type``."""
        listed = self.for_exchange(exchange)
        structural = structural_symbol(raw, market_type)
        if listed is None:
            if structural is not None:
                return Resolution(structural, "separators")
            return Resolution(
                None,
                "none",
                f"ambiguous symbol {raw!r}: no market list for {exchange} to resolve it "
                "(configure markets_file)",
            )
        if structural is not None and structural in listed:
            return Resolution(structural, "market_list")
        wanted = _compact(raw)
        derivative = market_type != "spot"
        candidates = sorted(
            s for s in listed if _is_derivative(s) == derivative and wanted in _compact_forms(s)
        )
        if len(candidates) == 1:
            return Resolution(candidates[0], "market_list")
        if not candidates:
            return Resolution(
                None,
                "market_list",
                f"symbol {raw!r} ({market_type}) is not in {exchange}'s market list",
            )
        return Resolution(
            None,
            "market_list",
            f"ambiguous symbol {raw!r}: {', '.join(candidates)} all match on {exchange}",
            tuple(candidates),
        )


def _compact_forms(symbol: str) -> set[str]:
    """``BTC/USDT:USDT`` is written ``BTCUSDT`` by Binance and ``BTC_USDT_USDT`` by freqtrade."""
    pair, _, settle = symbol.partition(":")
    forms = {_compact(pair)}
    if settle:
        forms.add(_compact(pair) + _compact(settle))
    return forms


def structural_symbol(raw: str, market_type: str) -> str | None:
    """The one reading of a separated name, or None when it takes a market list to decide."""
    parts = [p for p in _SEPARATORS.split(raw.upper()) if p]
    if len(parts) == 2 and market_type == "spot":
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3 and market_type != "spot":
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    return None


def catalog_from_json(data: Any, *, origin: str = "markets") -> MarketCatalog:
    if isinstance(data, list):
        return MarketCatalog({ANY_EXCHANGE: frozenset(map(str, data))})
    if not isinstance(data, Mapping):
        raise MarketListError(f"{origin}: expected a JSON list or object of markets")
    if "symbols" in data and isinstance(data["symbols"], list):
        exchange = str(data.get("exchange") or ANY_EXCHANGE)
        return MarketCatalog({exchange: frozenset(map(str, data["symbols"]))})
    if all(isinstance(v, list) for v in data.values()):
        return MarketCatalog({str(k): frozenset(map(str, v)) for k, v in data.items()})
    if all(isinstance(v, Mapping) for v in data.values()):
        # a ccxt ``exchange.markets`` dump: keys are the unified symbols
        return MarketCatalog({ANY_EXCHANGE: frozenset(map(str, data))})
    raise MarketListError(f"{origin}: unrecognised market list layout")


def load_catalog(path: Path | None) -> MarketCatalog:
    """Read a market list file; no file means no list (only separated names resolve)."""
    if path is None:
        return MarketCatalog()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MarketListError(f"cannot read market list {path}: {exc}") from None
    return catalog_from_json(data, origin=str(path))


def catalog_of(symbols: Iterable[str], exchange: str = ANY_EXCHANGE) -> MarketCatalog:
    return MarketCatalog({exchange: frozenset(symbols)})
