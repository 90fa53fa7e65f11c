"""Settings of a migration run, from a TOML file and/or the command line.

Nothing here reads the environment: the CLI and the Dagster resource decide where the file is
(default ``<state_dir>/migration.toml``) and pass overrides explicitly.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_CHUNK_ROWS = 250_000
# JSON is parsed whole (the standard library has no streaming parser); freqtrade's JSON files
# are small, and a larger one is refused with this limit named rather than exhausting memory.
DEFAULT_JSON_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_SOURCE = "legacy_cache"
# More than this share of a file's rows rejected refuses the whole file (nothing of it is kept):
# a file that bad is the wrong file, or is read wrongly, and its few "good" rows are suspect too.
DEFAULT_MAX_REJECTED_FRACTION = 0.01


class MigrationConfigError(ValueError):
    """The migration settings are malformed; the message names the key and the file."""


@dataclass(frozen=True)
class UserPattern:
    """A file-name regular expression from config, tried before the built-in patterns.

    Named groups: ``symbol`` (or ``base`` and ``quote``), ``timeframe``, optionally
    ``exchange``, ``market_type``, ``dataset``; ``fixed`` supplies values the name lacks.
    """

    regex: str
    fixed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MigrationConfig:
    root: Path | None = None
    archive_dir: Path | None = None
    default_exchange: str = "binance"
    naive_timezone: str = "UTC"
    patterns: tuple[UserPattern, ...] = ()
    markets_file: Path | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    json_max_bytes: int = DEFAULT_JSON_MAX_BYTES
    spill_memory_limit: str = "512MB"
    source: str = DEFAULT_SOURCE
    workers: int = 1
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION

    def with_overrides(self, **values: Any) -> MigrationConfig:
        """A copy with the given non-None values replaced (CLI options override the file)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def check(self) -> MigrationConfig:
        try:
            ZoneInfo(self.naive_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MigrationConfigError(
                f"naive_timezone={self.naive_timezone!r} is not an IANA time zone"
            ) from None
        if self.chunk_rows < 1_000:
            raise MigrationConfigError(f"chunk_rows={self.chunk_rows} is below 1000")
        if self.workers < 1:
            raise MigrationConfigError(f"workers={self.workers} must be at least 1")
        if not self.source:
            raise MigrationConfigError("source must not be empty")
        if self.default_exchange not in ccxt_exchange_ids():
            raise MigrationConfigError(
                f"exchange {self.default_exchange!r} is not a ccxt exchange id "
                "(such as binance, kraken, okx)"
            )
        if not 0 <= self.max_rejected_fraction <= 1:
            raise MigrationConfigError(
                f"max_rejected_fraction={self.max_rejected_fraction} is not between 0 and 1"
            )
        return self


_KNOWN = {
    "root",
    "archive_dir",
    "default_exchange",
    "naive_timezone",
    "patterns",
    "markets_file",
    "chunk_rows",
    "json_max_bytes",
    "spill_memory_limit",
    "source",
    "workers",
    "max_rejected_fraction",
}
_PATHS = {"root", "archive_dir", "markets_file"}


@lru_cache(maxsize=1)
def ccxt_exchange_ids() -> frozenset[str]:
    """ccxt's exchange ids (what ``exchange`` columns hold), read from its package folder:
    importing ccxt costs ~2 s."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    folder = Path(next(iter(spec.submodule_search_locations)))
    return frozenset(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def config_from_mapping(
    data: Mapping[str, Any], *, base_dir: Path | None = None, origin: str = "config"
) -> MigrationConfig:
    """Build a config from parsed TOML; relative paths are taken relative to ``base_dir``."""
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise MigrationConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key in _PATHS:
            path = Path(str(raw)).expanduser()
            values[key] = path if path.is_absolute() or base_dir is None else base_dir / path
        elif key == "patterns":
            values[key] = tuple(_pattern(p, origin) for p in raw)
        else:
            values[key] = raw
    try:
        return MigrationConfig(**values).check()
    except TypeError as exc:
        raise MigrationConfigError(f"{origin}: {exc}") from None


def _pattern(raw: Any, origin: str) -> UserPattern:
    if isinstance(raw, str):
        return UserPattern(raw)
    if not isinstance(raw, Mapping) or "regex" not in raw:
        raise MigrationConfigError(f"{origin}: each pattern needs a 'regex' key, got {raw!r}")
    fixed = {k: str(v) for k, v in raw.items() if k != "regex"}
    return UserPattern(str(raw["regex"]), fixed)


def load_config(path: Path | None) -> MigrationConfig:
    """Read ``path`` (TOML); a missing default file means all defaults."""
    if path is None or not path.exists():
        return MigrationConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MigrationConfigError(f"{path}: {exc}") from None
    return config_from_mapping(data, base_dir=path.parent, origin=str(path))
