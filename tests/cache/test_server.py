"""The project's Redis: started by the suite, answering on its own port."""

from __future__ import annotations

import dataclasses
import socket
import stat
import subprocess
import time

import pytest
import redis

from ats_pipelines.cache.server import ensure_redis, stop_redis
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_ping(port: int) -> bytes:
    """The answer to an unauthenticated PING (b"" while nothing listens yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)
    except ConnectionRefusedError:
        return b""


def test_own_redis_from_before_passwords_restarts_with_one(settings, tmp_path) -> None:
    port, state = _free_port(), tmp_path / "redis"
    state.mkdir()
    where = ["--dir", str(state), "--pidfile", str(state / "redis.pid")]
    subprocess.run(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes", *where],
        check=True,
    )
    mine = dataclasses.replace(settings, state_dir=tmp_path, redis_port=port)
    try:
        deadline = time.monotonic() + 10
        while not _raw_ping(port).startswith(b"+PONG"):  # the old one, open to anyone
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        assert ensure_redis(mine) == f"started Redis on 127.0.0.1:{port}"
        assert _raw_ping(port).startswith(b"-NOAUTH")
        assert redis.Redis.from_url(mine.redis_url).ping() is True
    finally:
        assert stop_redis(mine)
