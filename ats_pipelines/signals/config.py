"""Settings of the signals domain: which bars are analysed, the trend rule's parameters per
timeframe, and the coordinator's rules. Read from the environment once per call, never at import.

Variables (all optional; exchange and symbols are the market-data ones, ``ATS_EXCHANGE`` and
``ATS_SYMBOLS``, so the analyzers watch exactly the bars that are ingested):

* ``ATS_SIGNAL_TIMEFRAMES`` — timeframes with an analyzer sensor (``5m,15m,1h,4h``);
* ``ATS_TREND_PARAMS`` — overrides per timeframe, ``1h:swing=2,lookback=16,sensitivity=0.002;
  15m:lookback=40`` (unnamed fields keep their defaults);
* ``ATS_TREND_ANALYZER_ID`` — the analyzer id stored with every signal (``trend_v1``). Changing
  the rule's parameters changes its output: give the new parameters a new id, or live and
  replay outputs of the old id stop being comparable;
* ``ATS_COORDINATOR_TIMEFRAMES`` — timeframes the coordinator combines (``15m,1h``);
* ``ATS_COORDINATOR_WINDOW`` — how far back a signal still counts for confluence (``4h``);
* ``ATS_SIGNAL_SENSOR_INTERVAL`` — seconds between sensor evaluations (``30``).

:class:`LiveConfig` holds the live service's own knobs (``ats signals run`` options).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from ats_pipelines.config import ConfigError
from ats_pipelines.lib.timeframes import TimeframeError, parse_timeframe, sort_timeframes
from ats_pipelines.universe import Universe, load_universe

DEFAULT_ANALYZER_ID = "trend_v1"
DEFAULT_COORDINATOR_ID = "confluence_v1"
DEFAULT_SIGNAL_TIMEFRAMES = ("5m", "15m", "1h", "4h")
DEFAULT_COORDINATOR_TIMEFRAMES = ("15m", "1h")
DEFAULT_WINDOW = timedelta(hours=4)
DEFAULT_SENSOR_INTERVAL_S = 30
DEFAULT_BATCH_BARS = 200_000


@dataclass(frozen=True)
class TrendParams:
    """Parameters of the swing-break rule (see ``ats_pipelines.signals.trend``).

    ``swing``: bars on each side that make a swing high/low (and the bars it takes to confirm);
    ``lookback``: bars before the evaluated bar that the rule looks at, nothing older;
    ``sensitivity``: fraction by which a close must clear the swing level to count as a break.
    """

    swing: int
    lookback: int
    sensitivity: float

    def __post_init__(self) -> None:
        if not isinstance(self.swing, int) or self.swing < 1:
            raise ConfigError(f"trend parameter swing={self.swing!r}: must be an integer >= 1")
        # two swings need swing+1 bars between them and swing bars each side inside the window
        minimum = 3 * self.swing + 2
        if not isinstance(self.lookback, int) or self.lookback < minimum:
            raise ConfigError(
                f"trend parameter lookback={self.lookback!r}: must be an integer "
                f">= 3*swing+2 = {minimum} (room for two confirmed swings)"
            )
        if not 0 <= self.sensitivity < 1:
            raise ConfigError(
                f"trend parameter sensitivity={self.sensitivity!r}: must be in [0, 1)"
            )

    def as_dict(self) -> dict[str, float | int]:
        return {"swing": self.swing, "lookback": self.lookback, "sensitivity": self.sensitivity}


# Fewer, wider swings on higher timeframes: a 1h lookback of 16 bars is 16 hours of context.
DEFAULT_TREND_PARAMS: dict[str, TrendParams] = {
    "1m": TrendParams(swing=5, lookback=60, sensitivity=0.0005),
    "5m": TrendParams(swing=3, lookback=48, sensitivity=0.001),
    "15m": TrendParams(swing=3, lookback=32, sensitivity=0.001),
    "1h": TrendParams(swing=2, lookback=16, sensitivity=0.002),
    "4h": TrendParams(swing=2, lookback=12, sensitivity=0.003),
    "1d": TrendParams(swing=2, lookback=10, sensitivity=0.005),
}

# A lone signal's confidence per timeframe; confluence combines them (see coordinator.py).
DEFAULT_WEIGHTS: dict[str, float] = {
    "1m": 0.3,
    "5m": 0.4,
    "15m": 0.5,
    "1h": 0.6,
    "4h": 0.7,
    "1d": 0.75,
}


@dataclass(frozen=True)
class CoordinatorRules:
    """What the coordinator combines and how far back a signal still counts."""

    coordinator_id: str = DEFAULT_COORDINATOR_ID
    timeframes: tuple[str, ...] = DEFAULT_COORDINATOR_TIMEFRAMES
    window: timedelta = DEFAULT_WINDOW
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        if not self.timeframes:
            raise ConfigError("ATS_COORDINATOR_TIMEFRAMES is empty: name at least one timeframe")
        for tf in self.timeframes:
            _fixed_timeframe(tf, "ATS_COORDINATOR_TIMEFRAMES")
            weight = self.weights.get(tf)
            if weight is None or not 0 < weight < 1:
                raise ConfigError(f"coordinator weight of {tf}: {weight!r} is not in (0, 1)")
        if self.window <= timedelta(0):
            raise ConfigError(f"ATS_COORDINATOR_WINDOW={self.window}: must be positive")


@dataclass(frozen=True)
class SignalsSettings:
    """Everything the analyzers, the coordinator and their sensors need."""

    exchange: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...] = DEFAULT_SIGNAL_TIMEFRAMES
    analyzer_id: str = DEFAULT_ANALYZER_ID
    trend_params: Mapping[str, TrendParams] = field(
        default_factory=lambda: dict(DEFAULT_TREND_PARAMS)
    )
    coordinator: CoordinatorRules = field(default_factory=CoordinatorRules)
    sensor_interval_s: int = DEFAULT_SENSOR_INTERVAL_S
    batch_bars: int = DEFAULT_BATCH_BARS

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("signals: no symbols to analyse (ATS_SYMBOLS)")
        if not self.timeframes:
            raise ConfigError("ATS_SIGNAL_TIMEFRAMES is empty: name at least one timeframe")
        for tf in self.timeframes:
            _fixed_timeframe(tf, "ATS_SIGNAL_TIMEFRAMES")
            if tf not in self.trend_params:
                raise ConfigError(
                    f"ATS_SIGNAL_TIMEFRAMES: no trend parameters for {tf}; set "
                    f"them in ATS_TREND_PARAMS ({tf}:swing=..,lookback=..)"
                )
        missing = [tf for tf in self.coordinator.timeframes if tf not in self.timeframes]
        if missing:
            raise ConfigError(
                f"ATS_COORDINATOR_TIMEFRAMES: {','.join(missing)} not analysed "
                f"(ATS_SIGNAL_TIMEFRAMES={','.join(self.timeframes)})"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.analyzer_id):
            raise ConfigError(
                f"ATS_TREND_ANALYZER_ID={self.analyzer_id!r}: use letters, digits, _ . -"
            )
        if self.sensor_interval_s < 1:
            raise ConfigError(f"ATS_SIGNAL_SENSOR_INTERVAL={self.sensor_interval_s}: >= 1")
        if self.batch_bars < 1:
            raise ConfigError(f"signals batch_bars={self.batch_bars}: must be >= 1")

    def params(self, timeframe: str) -> TrendParams:
        try:
            return self.trend_params[timeframe]
        except KeyError:
            raise ConfigError(f"no trend parameters for timeframe {timeframe!r}") from None


def _fixed_timeframe(value: str, variable: str) -> str:
    try:
        tf = parse_timeframe(value)
    except TimeframeError as exc:
        raise ConfigError(f"{variable}: {exc}") from None
    if tf.is_calendar:
        raise ConfigError(f"{variable}: {value!r} is a calendar month; signals need fixed bars")
    return tf.value


def _timeframes(text: str, variable: str) -> tuple[str, ...]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    return tuple(sort_timeframes([_fixed_timeframe(v, variable) for v in values]))


def parse_trend_params(text: str, base: Mapping[str, TrendParams]) -> dict[str, TrendParams]:
    """``1h:swing=2,lookback=16;15m:sensitivity=0.001`` applied over ``base``."""
    out = dict(base)
    for part in filter(None, (p.strip() for p in text.split(";"))):
        tf, sep, assignments = part.partition(":")
        if not sep:
            raise ConfigError(f"ATS_TREND_PARAMS: {part!r} is not tf:name=value,...")
        tf = _fixed_timeframe(tf.strip(), "ATS_TREND_PARAMS")
        fields: dict[str, float | int] = {}
        for item in filter(None, (a.strip() for a in assignments.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not eq or name not in ("swing", "lookback", "sensitivity"):
                raise ConfigError(
                    f"ATS_TREND_PARAMS: {item!r} of {tf} is not swing=, lookback= or sensitivity="
                )
            try:
                fields[name] = float(value) if name == "sensitivity" else int(value)
            except ValueError:
                raise ConfigError(
                    f"ATS_TREND_PARAMS: {name}={value!r} of {tf} is not a number"
                ) from None
        if tf in out:
            out[tf] = replace(out[tf], **fields)  # type: ignore[arg-type]
        else:
            try:
                out[tf] = TrendParams(**fields)  # type: ignore[arg-type]
            except TypeError:
                raise ConfigError(
                    f"ATS_TREND_PARAMS: {tf} has no defaults; give swing, lookback and sensitivity"
                ) from None
    return out


def _duration(text: str, variable: str) -> timedelta:
    try:
        return timedelta(milliseconds=parse_timeframe(text.strip()).ms or 0)
    except TimeframeError:
        raise ConfigError(f"{variable}={text!r} is not a duration like 4h or 90m") from None


def load_signals_settings(
    environ: Mapping[str, str] | None = None, universe: Universe | None = None
) -> SignalsSettings:
    """Resolve the signals settings from ``environ`` (default: the process environment);
    ``universe`` if the caller loaded it already."""
    env = os.environ if environ is None else environ
    market = universe or load_universe(env)
    timeframes = (
        _timeframes(env.get("ATS_SIGNAL_TIMEFRAMES", ""), "ATS_SIGNAL_TIMEFRAMES")
        or DEFAULT_SIGNAL_TIMEFRAMES
    )
    coordinator = CoordinatorRules(
        timeframes=_timeframes(
            env.get("ATS_COORDINATOR_TIMEFRAMES", ""), "ATS_COORDINATOR_TIMEFRAMES"
        )
        or DEFAULT_COORDINATOR_TIMEFRAMES,
        window=_duration(env["ATS_COORDINATOR_WINDOW"], "ATS_COORDINATOR_WINDOW")
        if env.get("ATS_COORDINATOR_WINDOW")
        else DEFAULT_WINDOW,
    )
    interval = env.get("ATS_SIGNAL_SENSOR_INTERVAL", str(DEFAULT_SENSOR_INTERVAL_S))
    try:
        interval_s = int(interval)
    except ValueError:
        raise ConfigError(f"ATS_SIGNAL_SENSOR_INTERVAL={interval!r} is not whole seconds") from None
    return SignalsSettings(
        exchange=market.exchange,
        symbols=market.symbols,
        timeframes=timeframes,
        analyzer_id=env.get("ATS_TREND_ANALYZER_ID", DEFAULT_ANALYZER_ID).strip(),
        trend_params=parse_trend_params(env.get("ATS_TREND_PARAMS", ""), DEFAULT_TREND_PARAMS),
        coordinator=coordinator,
        sensor_interval_s=interval_s,
    )


@dataclass(frozen=True)
class LiveConfig:
    """Where the live service reads and writes, and its knobs."""

    database_url: str
    redis_url: str | None  # None: no events; every sweep_interval_s all series are looked at
    service_id: str = "signals"
    sweep_interval_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    block_ms: int = 1_000
    retry_s: float = 0.05  # an event's bar not yet closed by the database clock
    metrics_port: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.sweep_interval_s <= 0:
            raise ConfigError(f"signal service sweep interval {self.sweep_interval_s}: must be > 0")
        if self.heartbeat_interval_s <= 0:
            raise ConfigError(
                f"signal service heartbeat interval {self.heartbeat_interval_s}: must be > 0"
            )
        if not self.service_id.strip():
            raise ConfigError("signal service id is empty")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"signal service duration {self.duration_s}: must be > 0")
