"""File-name conventions of legacy caches: an ordered list of patterns over the relative path.

Order: user patterns from config (they know their cache), then freqtrade's convention, then
common ad-hoc ones. The first pattern that matches decides; a name no pattern matches is
reported, never skipped silently. Patterns see the path relative to the discovery root
without its extension (``futures/XRP_USDT_USDT-1h-futures``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ats_pipelines.lib.timeframes import TimeframeError, from_duration, parse_timeframe
from ats_pipelines.migration.config import UserPattern, ccxt_exchange_ids

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "feather",
    ".ftr": "feather",
    ".arrow": "feather",
    ".json": "json",
    ".json.gz": "json.gz",
}
DATASETS = ("candles", "reference_candles", "funding_rates", "trades")
_FUTURES_DIRS = {"futures", "future", "swap", "perp", "perpetual", "usdm", "um", "coinm", "cm"}
# freqtrade's candle types; premiumIndex is stored with the DB's spelling
_CANDLE_TYPES = {
    None: ("candles", None),
    "spot": ("candles", None),
    "futures": ("candles", None),
    "mark": ("reference_candles", "mark"),
    "index": ("reference_candles", "index"),
    "premiumIndex": ("reference_candles", "premium_index"),
    "funding_rate": ("funding_rates", None),
    "trades": ("trades", None),
}
_TF = r"(?P<timeframe>\d+(?:min|Mo|[smhdwMHD]))"
_SYM = r"(?P<symbol>[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*?)"
_MARKET = r"(?:[_\-](?P<market>spot|futures|perp|swap))?"


@dataclass(frozen=True)
class NamePattern:
    name: str
    regex: re.Pattern[str]
    fixed: tuple[tuple[str, str], ...] = ()


BUILTIN_PATTERNS: tuple[NamePattern, ...] = (
    NamePattern(
        "freqtrade_trades",
        re.compile(r"(?:^|/)(?P<symbol>[A-Za-z0-9_]+)-trades$"),
        (("dataset", "trades"),),
    ),
    NamePattern(
        "freqtrade",
        re.compile(
            r"(?:^|/)(?P<symbol>[A-Za-z0-9_]+)-"
            + _TF
            + r"(?:-(?P<candle>futures|mark|index|premiumIndex|funding_rate|spot))?$"
        ),
    ),
    NamePattern(
        "symbol_trades", re.compile(r"(?:^|/)" + _SYM + r"[_\-.]trades$"), (("dataset", "trades"),)
    ),
    NamePattern(
        "symbol_timeframe", re.compile(r"(?:^|/)" + _SYM + r"[_\-.]" + _TF + _MARKET + "$")
    ),
    NamePattern("symbol_dir_timeframe", re.compile(r"(?:^|/)" + _SYM + "/" + _TF + _MARKET + "$")),
    NamePattern(
        "symbol_dir_trades", re.compile(r"(?:^|/)" + _SYM + r"/trades$"), (("dataset", "trades"),)
    ),
)


@dataclass(frozen=True)
class NameMatch:
    """What a file name says, before the symbol is resolved against a market list."""

    pattern: str
    symbol_text: str
    dataset: str
    market_type: str
    timeframe: str | None
    price_type: str | None
    exchange: str | None


class PatternError(ValueError):
    """A pattern matched but a part of the name is unusable (bad timeframe, dataset…)."""


def split_format(path: Path) -> tuple[str, str] | None:
    """``(format, path without extension)`` for a supported file, else None."""
    name = path.name.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return FORMATS[ext], str(path)[: -len(ext)]
    return None


def normalise_timeframe(text: str) -> str:
    """``1min``→``1m``, ``1H``→``1h``, ``60m``→``1h``, ``1Mo``→``1M`` (ccxt spelling)."""
    match = re.fullmatch(r"(\d+)(min|Mo|[smhdwMHD])", text)
    if not match:
        raise PatternError(f"unrecognised timeframe {text!r}")
    count, unit = int(match[1]), match[2]
    unit = {"min": "m", "Mo": "M", "H": "h", "D": "d"}.get(unit, unit)
    try:
        tf = parse_timeframe(f"{count}{unit}")
    except TimeframeError as exc:
        raise PatternError(str(exc)) from None
    if tf.ms is None:
        return tf.value
    return from_duration(tf.ms)


def _exchange_in(parts: Sequence[str], known: frozenset[str]) -> str | None:
    found = [p.lower() for p in parts if p.lower() in known]
    return found[-1] if found else None


def compile_user_patterns(patterns: Sequence[UserPattern]) -> tuple[NamePattern, ...]:
    compiled = []
    for i, p in enumerate(patterns):
        try:
            regex = re.compile(p.regex)
        except re.error as exc:
            raise PatternError(f"user pattern {i + 1} {p.regex!r}: {exc}") from None
        groups = set(regex.groupindex)
        if "symbol" not in groups and not {"base", "quote"} <= groups and "symbol" not in p.fixed:
            raise PatternError(f"user pattern {i + 1} {p.regex!r} has no (?P<symbol>…) group")
        compiled.append(NamePattern(f"user_{i + 1}", regex, tuple(sorted(p.fixed.items()))))
    return tuple(compiled)


def match_name(
    relative_stem: str,
    patterns: Sequence[NamePattern],
    extra_exchanges: frozenset[str] = frozenset(),
) -> NameMatch | None:
    """Apply ``patterns`` in order to a relative path without extension."""
    posix = PurePosixPath(relative_stem).as_posix()
    dirs = posix.split("/")[:-1]
    known = ccxt_exchange_ids() | extra_exchanges
    for pattern in patterns:
        m = pattern.regex.search(posix)
        if m is None:
            continue
        return _build(pattern, m, dirs, known)
    return None


def _build(
    pattern: NamePattern, m: re.Match[str], dirs: list[str], known: frozenset[str]
) -> NameMatch:
    groups = {k: v for k, v in m.groupdict().items() if v is not None}
    values = {**dict(pattern.fixed), **groups}
    candle = values.get("candle")
    if "dataset" in values:
        dataset, price_type = values["dataset"], values.get("price_type")
    else:
        dataset, price_type = _CANDLE_TYPES.get(candle, (None, None))
    if dataset not in DATASETS:
        raise PatternError(f"pattern {pattern.name}: unknown dataset {dataset!r}")
    symbol = values.get("symbol") or f"{values.get('base', '')}/{values.get('quote', '')}"
    market = values.get("market_type") or values.get("market")
    if market is None:
        derivative = candle not in (None, "spot") or bool({d.lower() for d in dirs} & _FUTURES_DIRS)
        market = "futures" if derivative else "spot"
    market = "spot" if market == "spot" else "futures"
    if dataset in ("reference_candles", "funding_rates") and market == "spot":
        raise PatternError(f"{dataset} of a spot market make no sense ({pattern.name})")
    timeframe = values.get("timeframe")
    if timeframe is None and dataset != "trades":
        raise PatternError(f"pattern {pattern.name}: no timeframe in the name")
    return NameMatch(
        pattern=pattern.name,
        symbol_text=symbol,
        dataset=dataset,
        market_type=market,
        timeframe=normalise_timeframe(timeframe) if timeframe else None,
        price_type=price_type,
        exchange=(values.get("exchange") or _exchange_in(dirs, known) or None),
    )
