"""Pointing a ccxt exchange at another host (the emulator) without touching ccxt.

ccxt keeps every endpoint base in ``urls['api']`` (REST, and for ccxt.pro the websocket bases
under ``urls['api']['ws']``). Replacing the scheme and host of each one, keeping its path, is
all a client needs to talk to the emulator; the same walk guarantees no URL is left pointing at
a real exchange.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

SPOT_ONLY_OPTIONS: dict[str, Any] = {
    # Only spot markets: nothing tries the futures/options exchangeInfo endpoints.
    "defaultType": "spot",
    "fetchMarkets": {"types": ["spot"]},
    # Currencies and margin pairs come from signed sapi endpoints: never ask for them.
    "fetchCurrencies": False,
    "fetchMargins": False,
}


def _rehost(url: str, rest_base: str, ws_base: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        target = urlsplit(rest_base)
    elif parts.scheme in ("ws", "wss"):
        target = urlsplit(ws_base)
    else:
        return url
    path = target.path.rstrip("/") + parts.path
    return urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))


def rehost_urls(api_urls: Any, rest_base: str, ws_base: str | None = None) -> Any:
    """A copy of ccxt's ``urls['api']`` with every URL's host replaced.

    ``rest_base`` replaces ``https://<host>`` (e.g. ``http://127.0.0.1:8765``); ``ws_base``
    replaces ``wss://<host>`` and defaults to ``rest_base`` with a ``ws`` scheme.
    """
    if ws_base is None:
        ws_base = "ws" + rest_base[4:] if rest_base.startswith("http") else rest_base
    if isinstance(api_urls, dict):
        return {k: rehost_urls(v, rest_base, ws_base) for k, v in api_urls.items()}
    if isinstance(api_urls, str):
        return _rehost(api_urls, rest_base, ws_base)
    return api_urls


def urls_not_on(api_urls: Any, allowed_netloc: str) -> list[str]:
    """Every URL in ``api_urls`` whose host is not ``allowed_netloc`` (should be none)."""
    if isinstance(api_urls, dict):
        return [u for v in api_urls.values() for u in urls_not_on(v, allowed_netloc)]
    if isinstance(api_urls, str) and "://" in api_urls:
        return [] if urlsplit(api_urls).netloc == allowed_netloc else [api_urls]
    return []
