"""The project-managed local PostgreSQL/TimescaleDB cluster under ``.ats/pg``.

initdb refuses to run as root, so when we are root the server runs as an unprivileged system
user (``postgres`` when the Debian package created it, otherwise ``atsdb``), and every server
command is run through ``runuser``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ats_pipelines.config import ADMIN_DB_USER, DEFAULT_DB_USER, Settings
from ats_pipelines.db.cluster_roles import ensure_roles

FALLBACK_SERVER_USER = "atsdb"

# Sized for a 2-core / few-GiB machine that also runs Dagster, DuckDB and the tests.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'512MB'",
    "temp_buffers": "'64MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "effective_cache_size": "'4GB'",
    "max_wal_size": "'2GB'",
    "checkpoint_timeout": "'15min'",
    "wal_compression": "'on'",
    "max_worker_processes": "16",
    "max_parallel_workers_per_gather": "1",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_min_messages": "'warning'",
    "log_line_prefix": "'%m [%p] %d '",
}
TIMESCALE_SETTINGS = {
    "shared_preload_libraries": "'timescaledb'",
    "timescaledb.telemetry_level": "'off'",
    "timescaledb.max_background_workers": "4",
}


# Only the cluster's owner (the OS user running the server, mapped in pg_ident.conf) connects
# without a password, as the superuser, over the socket (its directory is 0700): it creates the
# roles and databases. Every role, the platform's own included, authenticates with a password.
HBA = f"""# written by `ats db up`
local all {ADMIN_DB_USER} peer map=owner
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
"""


class ClusterError(RuntimeError):
    """A step of managing the local cluster failed; the message says which and why."""


@dataclass(frozen=True)
class PgInstall:
    """The PostgreSQL server binaries the cluster runs from."""

    bindir: Path
    version: int
    sharedir: Path
    libdir: Path

    @property
    def has_timescaledb(self) -> bool:
        return (self.sharedir / "extension" / "timescaledb.control").exists()

    @property
    def has_timescale_licence(self) -> bool:
        """The build carries TimescaleDB's ``timescale``-licensed module (Community edition)."""
        # the server finds its libraries relative to its binaries (a relocated build under /opt)
        libdirs = (self.bindir.parent / "lib", self.libdir)
        return any(any(d.glob("timescaledb-tsl-*.so")) for d in libdirs)


def find_pg_install(environ: dict[str, str] | None = None) -> PgInstall:
    """The newest installed server (or ``ATS_PG_BINDIR``), with its share and lib dirs."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("ATS_PG_BINDIR"):
        candidates.append(Path(env["ATS_PG_BINDIR"]))
    else:
        found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
        found.sort(key=lambda p: int(Path(p).parent.parent.name), reverse=True)
        candidates += [Path(p).parent for p in found]
        pg_config = shutil.which("pg_config")
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            if out.returncode == 0:
                candidates.append(Path(out.stdout.strip()))
    for bindir in candidates:
        if (bindir / "postgres").exists() and (bindir / "initdb").exists():
            return _describe_install(bindir)
    raise ClusterError(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and "
        "pg_config); run `make setup`, or set ATS_PG_BINDIR"
    )


def _describe_install(bindir: Path) -> PgInstall:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
    version = int(out.stdout.split()[-1].split(".")[0])
    debian_share = Path(f"/usr/share/postgresql/{version}")
    debian_lib = Path(f"/usr/lib/postgresql/{version}/lib")
    if debian_share.exists():
        return PgInstall(bindir, version, debian_share, debian_lib)
    return PgInstall(bindir, version, bindir.parent / "share", bindir.parent / "lib")


def _server_user() -> str | None:
    """None when we may run the server ourselves; otherwise the user to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SERVER_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_SERVER_USER,
        ],
        check=True,
    )
    return FALLBACK_SERVER_USER


def _as_server_user(cmd: list[str], user: str | None) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _user_can_enter(path: Path, user: str | None) -> bool:
    if user is None:
        return True
    probe = subprocess.run(_as_server_user(["test", "-x", str(path)], user))
    return probe.returncode == 0


class LocalCluster:
    """``ats db up|down|status`` for the cluster in ``<state_dir>/pg``."""

    def __init__(
        self,
        settings: Settings,
        install: PgInstall | None = None,
        *,
        preload_timescaledb: bool = True,
        timescale_licence: str | None = None,
    ) -> None:
        self.settings = settings
        self._install = install
        self.preload_timescaledb = preload_timescaledb
        # "apache" runs a Community build as the Apache edition (an upgrade test switches it)
        self.timescale_licence = timescale_licence
        self.user = _server_user()

    @property
    def install(self) -> PgInstall:
        if self._install is None:
            self._install = find_pg_install()
        return self._install

    @property
    def base(self) -> Path:
        return self.settings.pg_dir

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / "postgres.log"

    def _bin(self, name: str) -> str:
        return str(self.install.bindir / name)

    def run(
        self, cmd: list[str], what: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            _as_server_user(cmd, self.user), capture_output=True, text=True, input=stdin
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            tail = " | ".join(detail[-3:]) if detail else f"exit {proc.returncode}"
            raise ClusterError(f"{what} failed: {tail} (log: {self.log_file})")
        return proc

    def try_run(self, cmd: list[str], stdin: str | None = None) -> bool:
        """Run a server command as the server user; True when it succeeded."""
        proc = subprocess.run(
            _as_server_user(cmd, self.user), capture_output=True, text=True, input=stdin
        )
        return proc.returncode == 0

    def _prepare_base(self) -> None:
        """Create ``.ats/pg``; when the server user cannot reach the checkout, keep the
        cluster in /var/lib and link it, rather than loosening permissions of the user's
        folders."""
        if self.base.exists() or self.base.is_symlink():
            return
        self.base.parent.mkdir(parents=True, exist_ok=True)
        if _user_can_enter(self.base.parent, self.user):
            self.base.mkdir()
        else:
            digest = hashlib.sha256(str(self.base).encode()).hexdigest()[:12]
            real = Path("/var/lib/ats-pipelines") / digest
            real.mkdir(parents=True, exist_ok=True)
            self.base.symlink_to(real, target_is_directory=True)
        for sub in ("data", "run", "log"):
            (self.base / sub).mkdir(exist_ok=True)
        if self.user is not None:
            subprocess.run(["chown", "-R", f"{self.user}:", str(self.base.resolve())], check=True)
        os.chmod(self.data_dir, 0o700)
        os.chmod(self.base / "run", 0o700)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """initdb once; returns True when it created the cluster now."""
        self._prepare_base()
        if self.is_initialised():
            return False
        self.run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                ADMIN_DB_USER,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            "initdb",
        )
        self.write_config()
        self.write_hba()
        return True

    def write_config(self) -> None:
        settings = dict(SERVER_SETTINGS)
        settings["port"] = str(self.settings.db_port)
        settings["unix_socket_directories"] = f"'{self.base / 'run'}'"
        if self.preloads_timescaledb:
            settings.update(TIMESCALE_SETTINGS)
            if self.timescale_licence is not None:
                settings["timescaledb.license"] = f"'{self.timescale_licence}'"
        lines = ["# written by `ats db up`; edit ats_pipelines/db/cluster.py instead"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        conf = self.data_dir / "ats.conf"
        conf.write_text("\n".join(lines) + "\n")
        main = self.data_dir / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'ats.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'ats.conf'\n")
        if self.user is not None:
            subprocess.run(["chown", f"{self.user}:", str(conf), str(main)], check=True)

    @property
    def os_user(self) -> str:
        """The OS user the server runs as: the cluster's owner."""
        return self.user or pwd.getpwuid(os.geteuid()).pw_name

    def write_hba(self) -> bool:
        """Write pg_hba.conf and pg_ident.conf; True when one changed (reload needed)."""
        ident = f"# written by `ats db up`\nowner {self.os_user} {ADMIN_DB_USER}\n"
        changed = False
        for path, text in (
            (self.data_dir / "pg_hba.conf", HBA),
            (self.data_dir / "pg_ident.conf", ident),
        ):
            if path.exists() and path.read_text() == text:
                continue
            path.write_text(text)
            changed = True
            if self.user is not None:
                subprocess.run(["chown", f"{self.user}:", str(path)], check=True)
        return changed

    @property
    def preloads_timescaledb(self) -> bool:
        return self.install.has_timescaledb and self.preload_timescaledb

    def hba_is_current(self) -> bool:
        hba = self.data_dir / "pg_hba.conf"
        return hba.exists() and hba.read_text() == HBA

    def reload(self) -> None:
        self.run([self._bin("pg_ctl"), "reload", "-D", str(self.data_dir)], "reloading")

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        proc = subprocess.run(
            _as_server_user([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)], self.user),
            capture_output=True,
            text=True,
        )
        return proc.returncode == 0

    def start(self) -> bool:
        """Start the server if it is not running, and make sure of its roles and access rules
        (also on a running cluster made before them); True when it started it now."""
        self.init()
        os.chmod(self.base / "run", 0o700)
        started = False
        if not self.is_running():
            self._start()
            started = True
        ensure_roles(self)
        return started

    def _start(self) -> None:
        if _port_in_use(self.settings.db_port):
            raise ClusterError(
                f"port 127.0.0.1:{self.settings.db_port} is taken by another server (another "
                "checkout's cluster?); stop it or choose another port with ATS_DB_PORT"
            )
        self.write_config()  # a changed port or settings take effect at start
        self.run(
            [
                self._bin("pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
            ],
            f"starting PostgreSQL on 127.0.0.1:{self.settings.db_port}",
        )

    def stop(self) -> bool:
        if not self.is_running():
            return False
        self.run(
            [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
            "stopping PostgreSQL",
        )
        return True

    def psql(self, role: str = ADMIN_DB_USER, dbname: str = "postgres") -> list[str]:
        """psql over the server's socket as ``role`` (the owner's peer login for the admin)."""
        return [
            self._bin("psql"),
            "-h",
            str(self.base / "run"),
            "-p",
            str(self.settings.db_port),
            "-U",
            role,
            "-d",
            dbname,
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
        ]

    def _psql_with_dbname(self, name: str) -> list[str]:
        return [
            self._bin("psql"),
            "-h",
            str(self.base / "run"),
            "-p",
            str(self.settings.db_port),
            "-U",
            ADMIN_DB_USER,
            "-d",
            "postgres",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"dbname={name}",
        ]

    def create_database(self, name: str) -> bool:
        """CREATE DATABASE when missing, through the server's own socket. The name travels
        as a psql variable (quoted by psql), never pasted into SQL."""
        psql = self._psql_with_dbname(name)
        found = self.run(
            psql,
            "looking up the database",
            stdin="SELECT 1 FROM pg_database WHERE datname = :'dbname';\n",
        )
        if found.stdout.strip() == "1":
            return False
        self.run(
            psql,
            f"creating database {name}",
            stdin=f'CREATE DATABASE :"dbname" OWNER {DEFAULT_DB_USER};\n',
        )
        return True

    def drop_database(self, name: str) -> None:
        psql = self._psql_with_dbname(name)
        self.run(
            psql,
            f"dropping database {name}",
            stdin='DROP DATABASE IF EXISTS :"dbname" WITH (FORCE);\n',
        )
