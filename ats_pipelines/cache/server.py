"""The project-managed Redis for the hot cache (port 56379, state under .ats/redis).

It keeps nothing on disk: the hot cache is rebuilt from the database and the stream.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from ats_pipelines.config import Settings


class CacheServerError(RuntimeError):
    """Redis could not be started or reached; the message names the port."""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis(settings: Settings) -> str:
    """Start the project's Redis unless it (or ATS_REDIS_URL's server) is there; one line."""
    if not settings.managed_redis:
        return "ATS_REDIS_URL is set: using an external Redis; nothing to start"
    port = settings.redis_port
    if _answers(port):
        return f"Redis already running on 127.0.0.1:{port}"
    binary = shutil.which("redis-server")
    if binary is None:
        raise CacheServerError("redis-server is not installed; run `make setup`")
    state = settings.state_dir / "redis"
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(state),
            "--pidfile",
            str(state / "redis.pid"),
            "--logfile",
            str(state / "redis.log"),
            "--protected-mode",
            "yes",
        ],
        capture_output=True,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(port):
            return f"started Redis on 127.0.0.1:{port}"
        time.sleep(0.05)
    raise CacheServerError(
        f"Redis did not start on 127.0.0.1:{port}: {(proc.stderr or proc.stdout).strip()} "
        f"(log: {state / 'redis.log'})"
    )


def stop_redis(settings: Settings) -> bool:
    if not settings.managed_redis or not _answers(settings.redis_port):
        return False
    with socket.create_connection(("127.0.0.1", settings.redis_port), timeout=2) as sock:
        sock.sendall(b"SHUTDOWN NOSAVE\r\n")
    return True
