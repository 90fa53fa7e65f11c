"""A second managed cluster without TimescaleDB: the plain-PostgreSQL edition, for real."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Iterator

import pytest

from ats_pipelines.config import Settings
from ats_pipelines.db.cluster import LocalCluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def plain_postgres_url(settings: Settings) -> Iterator[str]:
    plain = dataclasses.replace(
        settings,
        state_dir=settings.state_dir / "plain-pg",
        db_port=_free_port(),
        db_name=f"ats_plain_{uuid.uuid4().hex[:8]}",
        external_database_url=None,
    )
    cluster = LocalCluster(plain, preload_timescaledb=False)
    cluster.start()
    cluster.create_database(plain.db_name)
    try:
        yield plain.database_url
    finally:
        cluster.drop_database(plain.db_name)
        cluster.stop()
