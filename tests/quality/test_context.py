"""Great Expectations runs here without the network: no analytics, no version check, no Cloud.
Every socket opened or name resolved while a context is made, a suite validates and Data Docs
build is recorded; none may leave loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ats_pipelines.quality.context import quality_context
from ats_pipelines.quality.docs import build_data_docs
from ats_pipelines.quality.validate import check_candles
from tests.quality.conftest import NOW


def _loopback(host: object) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Non-loopback connections and lookups attempted during the test (refused)."""
    seen: list[str] = []
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(host):
            seen.append(f"connect {address}")
            raise OSError("network access refused by the test")
        return real_connect(sock, address)

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            seen.append(f"resolve {host}")
            raise socket.gaierror("name resolution refused by the test")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield seen


def test_validation_and_data_docs_stay_offline(
    outbound: list[str], tmp_path: Path, xrp_candles: pl.DataFrame, xrp_empty_minutes: pl.DataFrame
) -> None:
    context = quality_context(tmp_path / "site")
    assert os.environ["GX_ANALYTICS_ENABLED"] == "False"
    assert context.variables.analytics_enabled is False
    outcome = check_candles(
        xrp_candles.head(300), timeframe="1m", now=NOW, confirmed_empty=xrp_empty_minutes
    )
    assert outcome.success
    index = build_data_docs(
        [("binance", outcome)],
        tmp_path / "docs",
        run_name="offline",
        run_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert index.is_file() and (tmp_path / "docs" / "validations").is_dir()
    assert outbound == []
