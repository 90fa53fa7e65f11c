"""Discovery: every file under the root, identified by name or listed with the reason it is not."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.markets import MarketCatalog
from ats_pipelines.migration.patterns import (
    BUILTIN_PATTERNS,
    NamePattern,
    PatternError,
    compile_user_patterns,
    match_name,
    split_format,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveredFile:
    """A cache file whose name says what it holds; ``relative`` is its partition key."""

    path: Path
    root: Path
    relative: str
    fmt: str
    size: int
    dataset: str
    exchange: str
    symbol: str
    timeframe: str | None
    market_type: str
    price_type: str | None
    assumptions: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        what = self.price_type or self.dataset
        return f"{self.exchange} {self.symbol} {self.timeframe or '-'} {what}"


@dataclass(frozen=True)
class UnmatchedFile:
    path: Path
    relative: str
    size: int
    reason: str


@dataclass
class Discovery:
    root: Path
    files: list[DiscoveredFile] = field(default_factory=list)
    unmatched: list[UnmatchedFile] = field(default_factory=list)


@dataclass(frozen=True)
class Identifier:
    """Patterns and market list bound together, reusable for many files."""

    config: MigrationConfig
    catalog: MarketCatalog
    patterns: tuple[NamePattern, ...]

    @classmethod
    def build(cls, config: MigrationConfig, catalog: MarketCatalog) -> Identifier:
        return cls(config, catalog, compile_user_patterns(config.patterns) + BUILTIN_PATTERNS)

    def identify(self, root: Path, path: Path) -> DiscoveredFile | UnmatchedFile:
        relative = PurePosixPath(path.relative_to(root)).as_posix()
        size = path.stat().st_size
        split = split_format(Path(relative))
        if split is None:
            return UnmatchedFile(
                path, relative, size, f"unsupported format {''.join(path.suffixes) or '(none)'}"
            )
        fmt, stem = split
        known = frozenset(k for k in self.catalog.symbols if k != "*")
        try:
            found = match_name(stem, self.patterns, known | {self.config.default_exchange})
        except PatternError as exc:
            return UnmatchedFile(path, relative, size, str(exc))
        if found is None:
            return UnmatchedFile(path, relative, size, "file name matches no pattern")
        exchange = found.exchange or self.config.default_exchange
        resolution = self.catalog.resolve(found.symbol_text, exchange, found.market_type)
        if resolution.symbol is None:
            return UnmatchedFile(path, relative, size, resolution.reason or "unresolved symbol")
        assumptions: dict[str, Any] = {
            "pattern": found.pattern,
            "symbol_text": found.symbol_text,
            "symbol_resolution": resolution.method,
            "exchange_from": "path" if found.exchange else "default_exchange (config)",
        }
        return DiscoveredFile(
            path=path,
            root=root,
            relative=relative,
            fmt=fmt,
            size=size,
            dataset=found.dataset,
            exchange=exchange,
            symbol=resolution.symbol,
            timeframe=found.timeframe,
            market_type=found.market_type,
            price_type=found.price_type,
            assumptions=assumptions,
        )


def _walk(root: Path, exclude: Path | None) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if exclude is not None:
            dirnames[:] = [d for d in dirnames if (here / d).resolve() != exclude]
        dirnames.sort()
        for name in sorted(filenames):
            yield here / name


def discover(root: Path, config: MigrationConfig, catalog: MarketCatalog) -> Discovery:
    """Every regular file under ``root`` (recursive), identified or listed as unmatched."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"migration root {root} is not a directory")
    identifier = Identifier.build(config, catalog)
    exclude = config.archive_dir.resolve() if config.archive_dir else None
    result = Discovery(root)
    for path in _walk(root, exclude):
        if not path.is_file():
            continue
        found = identifier.identify(root, path)
        if isinstance(found, DiscoveredFile):
            result.files.append(found)
        else:
            log.info("event=migration_unmatched file=%s reason=%r", found.relative, found.reason)
            result.unmatched.append(found)
    result.files.sort(key=lambda f: f.relative)
    result.unmatched.sort(key=lambda u: u.relative)
    log.info(
        "event=migration_discovered root=%s files=%d unmatched=%d",
        root,
        len(result.files),
        len(result.unmatched),
    )
    return result
