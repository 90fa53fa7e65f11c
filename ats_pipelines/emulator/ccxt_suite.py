"""Run ccxt's own unified-API test suite, unmodified, against a running emulator.

ccxt ships its suite inside the installed package (``ccxt/test/tests_init.py``): it loads the
markets, picks a spot symbol and runs every public method's validator (``test/exchange/…``), or
with ``--ws`` every ``watch*`` validator. Two things stand between it and the emulator, and both
are settled outside ccxt's files:

- The runner refuses a ccxt imported from ``site-packages`` and reads its settings
  (``keys.local.json``, ``skip-tests.json``) three directories above ``ccxt/test``, as in ccxt's
  own repository. So the suite runs from a *layout* directory: ``python/ccxt`` mirrors the
  installed package with symbolic links (``test`` a real directory of links, so that ``..``
  resolves inside the layout), and the settings files sit at its root.
- ``keys.local.json`` is ccxt's test-side config: its ``binance`` entry is deep-merged into the
  exchange. The runner checks that ``urls['api']`` is binance.com, and switches to
  ``urls['test']`` when ``sandbox`` is set: so ``urls['test']`` is pointed at loopback (every
  REST and websocket base), ``sandbox`` set and the markets limited to spot.

``skip-tests.json`` carries ccxt's own binance entry (below, from ccxt's repository): the cases
that fail against the real exchange too. Nothing else is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro as ccxtpro

from ats_pipelines.exchange.urls import SPOT_ONLY_OPTIONS, rehost_urls, urls_not_on

# ccxt's skip-tests.json, entry "binance" (github.com/ccxt/ccxt, skip-tests.json at commit
# 99a3b8cfa8b39075ea35b3a4695705aecdbc3a9f), without its httpProxy (read only with --useProxy).
# The installed package does not ship the file; the runner needs one at the layout root.
CCXT_BINANCE_SKIPS: dict[str, Any] = {
    "skipWs": True,
    "skipPhpAsync": True,
    "skipMethods": {
        "loadMarkets": {
            "currencyIdAndCode": "i.e. binance does not have currency code BCC",
            "expiry": "expiry not set for future markets",
            "expiryDatetime": "expiry not set for future markets",
        },
        "fetchCurrencies": {
            "precision": "not provided in public api",
            "networks": "not yet unified",
        },
    },
}

_SNAPSHOT_RESET = (
    "a second subscription to the same book resets it to a REST snapshot, which on Binance "
    "spot has no timestamp (ccxt.pro binance handle_order_book_subscription)"
)
# Cases the suite fails against the real exchange too, that ccxt's entry above does not name.
# Each says what Binance sends and where that is on record.
REAL_EXCHANGE_SKIPS: dict[str, Any] = {
    "skipMethods": {
        "fetchOrderBook": {
            "timestamp": "Binance spot /api/v3/depth has no timestamp field (only lastUpdateId, "
            "bids, asks); ccxt maintainers on record: github.com/ccxt/ccxt/issues/8935, #18314",
        },
        # The suite watches BTC/USDT's book through watchOrderBook and
        # watchOrderBookForSymbols at once. Each subscription makes ccxt reset the shared book
        # to a fresh REST snapshot; the later one lands on a live book with no diffs buffered
        # and is handed out as it is: without a timestamp, as above. ccxt's own binance entry
        # skips the websocket suite altogether ("skipWs": true).
        "watchOrderBook": {"timestamp": _SNAPSHOT_RESET},
        "watchOrderBookForSymbols": {"timestamp": _SNAPSHOT_RESET},
    },
}

FAILURE = re.compile(r"\[TEST_FAILURE\]|UNHANDLED EXCEPTION|Traceback")


@dataclass(frozen=True)
class SuiteResult:
    returncode: int
    output: str

    @property
    def failures(self) -> list[str]:
        """Lines that report a failed method (the runner exits 0 even then)."""
        lines = self.output.splitlines()
        return [line for line in lines if FAILURE.search(line)] or (
            [f"exit status {self.returncode}"] if self.returncode else []
        )

    def tested(self, method: str) -> bool:
        return not any(
            method in line and ("SKIPPED" in line or "UNSUPPORTED" in line)
            for line in self.output.splitlines()
        )


def installed_ccxt_dir() -> Path:
    return Path(ccxt.__file__).resolve().parent


def build_layout(root: Path, rest_url: str, ws_url: str | None = None) -> Path:
    """The layout directory under ``root`` with settings pointing at ``rest_url``; returns
    the path of ``tests_init.py`` inside it."""
    package = installed_ccxt_dir()
    mirror = root / "python" / "ccxt"
    tests = mirror / "test"
    tests.mkdir(parents=True, exist_ok=True)
    for entry in package.iterdir():
        if entry.name != "test":
            _link(mirror / entry.name, entry)
    for entry in (package / "test").iterdir():
        _link(tests / entry.name, entry)
    # ccxt.pro's description: it adds the websocket bases (the REST class has none)
    description: dict[str, Any] = ccxtpro.binance().describe()  # pyright: ignore[reportAssignmentType]
    urls: dict[str, Any] = description["urls"]
    loopback = rehost_urls(_merged(urls["test"], urls["api"]), rest_url, ws_url)
    stray = urls_not_on(loopback, urlsplit(rest_url).netloc)
    if stray:
        raise ValueError(f"ccxt suite settings would leave loopback: {stray}")
    settings = {
        "binance": {
            # The runner asserts that urls['api'] is binance.com before it starts, then
            # switches to urls['test'] when 'sandbox' is set: that is where loopback goes.
            "sandbox": True,
            "urls": {"test": loopback},
            "options": SPOT_ONLY_OPTIONS,
            # spot markets only: the suite checks every market type 'has' claims is loaded
            "has": {"swap": False, "future": False, "option": False},
        }
    }
    (root / "keys.local.json").write_text(json.dumps(settings, indent=1))
    (root / "skip-tests.json").write_text(json.dumps({"binance": skips()}, indent=1))
    return tests / "tests_init.py"


def skips() -> dict[str, Any]:
    """ccxt's binance entry with the real-exchange cases added under ``skipMethods``."""
    methods = {**CCXT_BINANCE_SKIPS["skipMethods"], **REAL_EXCHANGE_SKIPS["skipMethods"]}
    return {**CCXT_BINANCE_SKIPS, "skipMethods": methods}


def _merged(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, nested dicts merged (every key either side has)."""
    out = dict(low)
    for key, value in high.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        return
    link.symlink_to(target, target_is_directory=target.is_dir())


def run_suite(
    root: Path,
    rest_url: str,
    *,
    ws: bool = False,
    symbol: str | None = None,
    timeout_s: float = 150,
) -> SuiteResult:
    """Run ``tests_init.py binance [symbol] [--ws]`` against the emulator at ``rest_url``."""
    script = build_layout(root, rest_url)
    # ``-m`` with the layout on PYTHONPATH: a script path would have its directory resolved
    # through the links into site-packages, where the runner finds no settings.
    args = [sys.executable, "-m", "tests_init", "binance"]
    if symbol is not None:
        args.append(symbol)
    if ws:
        args.append("--ws")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(script.parent), str(script.parents[2])]),
    }
    done = subprocess.run(
        args,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return SuiteResult(done.returncode, done.stdout + done.stderr)
