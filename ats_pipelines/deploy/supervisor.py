"""Starts, health-checks and stops the layout's processes on this machine (``ats prod``).

Each process runs in its own session (so stopping it stops its children: a code server's run
workers), logs to ``.ats/prod/<role>.log`` and is remembered by a pid file; only a pid whose
command line is still the one we started is ever signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ats_pipelines.config import Settings, project_root
from ats_pipelines.deploy.layout import ProcessSpec, http_ok

log = logging.getLogger(__name__)


class SupervisorError(RuntimeError):
    """A process of the layout did not start or become healthy; the message names it."""


@dataclass(frozen=True)
class ProcessState:
    role: str
    pid: int | None
    healthy: bool


def healthy(spec: ProcessSpec, env: dict[str, str]) -> bool:
    if spec.health_url is not None:
        return http_ok(spec.health_url)
    if spec.health is None:
        return True
    try:
        done = subprocess.run(spec.health, env=env, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.dir = settings.state_dir / "prod"

    def pid_file(self, role: str) -> Path:
        return self.dir / f"{role}.pid"

    def log_file(self, role: str) -> Path:
        return self.dir / f"{role}.log"

    def pid(self, role: str) -> int | None:
        """The pid of ``role``'s process if it is alive and still runs what we started."""
        path = self.pid_file(role)
        if not path.exists():
            return None
        pid_text, _, marker = path.read_text().partition("\n")
        pid = int(pid_text)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        return pid if marker.strip() in cmdline and state != "Z" else None

    def start(self, spec: ProcessSpec, env: dict[str, str]) -> bool:
        """Start ``spec`` unless it runs already; True when started now."""
        if self.pid(spec.role) is not None:
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(spec.role).open("ab") as out:
            proc = subprocess.Popen(
                spec.argv,
                env=env,
                cwd=project_root(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file(spec.role).write_text(f"{proc.pid}\n{Path(spec.argv[0]).name}\n")
        log.info("event=prod_process_started role=%s pid=%d", spec.role, proc.pid)
        return True

    def wait_healthy(self, spec: ProcessSpec, env: dict[str, str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not healthy(spec, env):
            if self.pid(spec.role) is None:
                raise SupervisorError(
                    f"{spec.role} exited while starting; see {self.log_file(spec.role)}"
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"{spec.role} not healthy after {timeout_s:.0f} s; see "
                    f"{self.log_file(spec.role)}"
                )
            time.sleep(1.0)

    def stop(self, role: str, timeout_s: float = 60.0) -> bool:
        """SIGTERM the process's session (SIGKILL after ``timeout_s``); True if it was running."""
        pid = self.pid(role)
        if pid is None:
            self.pid_file(role).unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.pid(role) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid(role) is not None:
            log.warning("event=prod_process_killed role=%s pid=%d", role, pid)
            os.killpg(pid, signal.SIGKILL)
        self.pid_file(role).unlink(missing_ok=True)
        log.info("event=prod_process_stopped role=%s pid=%d", role, pid)
        return True

    def state(self, spec: ProcessSpec, env: dict[str, str]) -> ProcessState:
        pid = self.pid(spec.role)
        return ProcessState(spec.role, pid, pid is not None and healthy(spec, env))
