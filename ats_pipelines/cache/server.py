"""The project-managed Redis for the hot cache (port 56379, state under .ats/redis).

It keeps nothing on disk: the hot cache is rebuilt from the database and the stream. Clients
authenticate with a password generated into ``<state_dir>/secrets/redis.password`` (0600; the
URL in ``Settings.redis_url`` carries it); the server reads it from a 0600 config file, never
from its command line, where any local user could read it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ats_pipelines.config import REDIS_SECRET, Settings
from ats_pipelines.local_secrets import ensure_secret, read_secret


class CacheServerError(RuntimeError):
    """Redis could not be started or reached; the message names the port."""


def _command(*args: str) -> bytes:
    """One command in RESP (bulk strings: a password may hold any byte)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _answers(port: int, password: str | None) -> bool:
    """True when a Redis on ``port`` answers PING after authenticating with ``password``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if password is not None:
                sock.sendall(_command("AUTH", password))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(_command("PING"))
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _write_conf(state: Path, password: str) -> Path:
    conf = state / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'requirepass "{password}"\n')
    os.chmod(conf, 0o600)
    return conf


def ensure_redis(settings: Settings) -> str:
    """Start the project's Redis unless it (or ATS_REDIS_URL's server) is there; one line."""
    if not settings.managed_redis:
        return "ATS_REDIS_URL is set: using an external Redis; nothing to start"
    port = settings.redis_port
    password = ensure_secret(settings.state_dir, REDIS_SECRET)
    if _answers(port, password):
        return f"Redis already running on 127.0.0.1:{port}"
    state = settings.state_dir / "redis"
    if _answers(port, None):
        _replace_open_redis(port, state)
    binary = shutil.which("redis-server")
    if binary is None:
        raise CacheServerError("redis-server is not installed; run `make setup`")
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    proc = subprocess.run(
        [
            binary,
            str(_write_conf(state, password)),
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
        if _answers(port, password):
            return f"started Redis on 127.0.0.1:{port}"
        time.sleep(0.05)
    raise CacheServerError(
        f"Redis did not start on 127.0.0.1:{port}: {(proc.stderr or proc.stdout).strip()} "
        f"(log: {state / 'redis.log'})"
    )


def _replace_open_redis(port: int, state: Path) -> None:
    """Our own Redis from before passwords (its pid file is in our state dir) is stopped so
    that it restarts with one; it holds nothing the database and the stream cannot rebuild.
    Anyone else's passwordless Redis on our port is named and left alone."""
    if not (state / "redis.pid").exists():
        raise CacheServerError(
            f"a Redis without a password that is not this project's answers on 127.0.0.1:{port};"
            " stop it or choose another port with ATS_REDIS_PORT"
        )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(_command("SHUTDOWN", "NOSAVE"))
    deadline = time.monotonic() + 10
    while _answers(port, None):
        if time.monotonic() > deadline:
            raise CacheServerError(f"the old Redis on 127.0.0.1:{port} did not stop")
        time.sleep(0.05)


def stop_redis(settings: Settings) -> bool:
    password = read_secret(settings.state_dir, REDIS_SECRET)
    if not settings.managed_redis or not _answers(settings.redis_port, password):
        return False
    with socket.create_connection(("127.0.0.1", settings.redis_port), timeout=2) as sock:
        if password is not None:
            sock.sendall(_command("AUTH", password))
            sock.recv(64)
        sock.sendall(_command("SHUTDOWN", "NOSAVE"))
    return True
