"""The project's Redis: started by the suite, answering on its own port."""

from __future__ import annotations

import dataclasses
import socket
import stat

import pytest
import redis

from ats_pipelines.cache.server import ensure_redis
from ats_pipelines.config import REDIS_SECRET
from ats_pipelines.local_secrets import secret_path


def test_redis_answers_and_ensure_is_idempotent(redis_url: str, settings) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    assert "already running" in ensure_redis(settings)


def test_external_redis_is_left_alone(settings) -> None:
    external = dataclasses.replace(settings, external_redis_url="redis://cache.example:6379/0")
    assert "nothing to start" in ensure_redis(external)


def test_redis_refuses_an_unauthenticated_client(redis_url: str, settings) -> None:
    with socket.create_connection(("127.0.0.1", settings.redis_port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=settings.redis_port).ping()
    secret = secret_path(settings.state_dir, REDIS_SECRET)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert redis.Redis.from_url(redis_url).ping() is True  # the platform's URL carries it
