"""Start a throwaway PostgreSQL server on 127.0.0.1 for the test session.

Tests of the PostgreSQL stores use a real server (Debian's ``postgresql`` package,
installed by ``scripts/install.sh --test``), never a fake: row locks, ``SKIP LOCKED``,
upserts and transactional DDL behave as in production. ``initdb`` puts a cluster in a
temporary directory; the server listens on a free loopback port and on a unix socket in
that directory, and runs without fsync (nothing here must survive a power cut).

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to
the ``postgres`` user that Debian's package creates and the server runs as that user.
TCP connections need the password (scram-sha-256), so URLs exercise the credential keys.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

SKIP_ENV = "KEFU_SKIP_POSTGRES"
INSTALL_HINT = (
    "Install it (Debian/Ubuntu: `apt-get install -y postgresql`, or `bash scripts/install.sh --test`), "
    f"or set {SKIP_ENV}=1 to skip the tests marked 'postgres'."
)
SUPERUSER = "kefu"
PASSWORD = "kefu-test-secret"
RUN_AS = "postgres"


def find_pg_bin() -> Optional[Path]:
    """The folder holding ``initdb``/``postgres``/``pg_ctl`` (newest Debian version first)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    for candidate in reversed(candidates):
        if os.access(candidate, os.X_OK):
            return Path(candidate).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_skipped() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory; a context manager, or call start/stop."""

    def __init__(self, bin_dir: Optional[Path] = None, port: Optional[int] = None) -> None:
        self.bin_dir = bin_dir or find_pg_bin()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._tmpdir: Optional[tempfile.TemporaryDirectory[str]] = None
        self.directory: Optional[Path] = None
        self._user: Optional[pwd.struct_passwd] = None
        self._started = False
        self._options = ""

    # -- URLs ---------------------------------------------------------------------
    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        assert self.directory is not None
        return self.directory / "socket"

    # -- process ------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool, as the ``postgres`` user when we are root."""
        assert self.bin_dir is not None
        options: dict[str, Any] = {}
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PGTZ": "UTC"}
        if self._user is not None:
            options.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
            env.update(HOME=self._user.pw_dir or "/", USER=self._user.pw_name, LOGNAME=self._user.pw_name)
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], env=env, cwd=str(self.directory),
                              capture_output=True, text=True, timeout=timeout, check=False, **options)

    def start(self, timeout: float = 60.0) -> "PostgresServer":
        if self.bin_dir is None:
            raise RuntimeError(f"PostgreSQL's initdb not found. {INSTALL_HINT}")
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam(RUN_AS)
            except KeyError as e:
                raise RuntimeError(f"Running as root and there is no '{RUN_AS}' user to run PostgreSQL as "
                                   f"(PostgreSQL refuses root). {INSTALL_HINT}") from e
        self._tmpdir = tempfile.TemporaryDirectory(prefix="kefu-postgres-")
        self.directory = Path(self._tmpdir.name)
        (self.directory / "socket").mkdir()
        pwfile = self.directory / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._user is not None:
            for path in (self.directory, self.directory / "socket", pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        data = self.directory / "data"
        done = self._run("initdb", "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}", "-E", "UTF8",
                         "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
        if done.returncode != 0:
            self._cleanup()
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")
        options = " ".join([
            "-c listen_addresses=127.0.0.1", f"-c port={self.port}", f"-c unix_socket_directories={self.socket_dir}",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=200",
            "-c shared_buffers=32MB", "-c timezone=UTC",
        ])
        self._options = options
        done = self._pg_ctl_start(timeout)
        if done.returncode != 0:
            log = self.directory / "postgres.log"
            details = log.read_text(errors="replace") if log.exists() else ""
            self._cleanup()
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {done.stderr}{details[-2000:]}")
        self._started = True
        return self

    def _pg_ctl_start(self, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self.directory is not None
        return self._run("pg_ctl", "start", "-w", "-t", str(int(timeout)), "-D", str(self.directory / "data"),
                         "-l", str(self.directory / "postgres.log"), "-o", self._options, timeout=timeout + 10)

    def halt(self) -> None:
        """Stop the server but keep its cluster (fault injection: a database outage); see resume."""
        assert self._started and self.directory is not None
        done = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.directory / "data"), timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stderr}")

    def resume(self, timeout: float = 60.0) -> None:
        """Start the halted server again on the same port with the same data."""
        done = self._pg_ctl_start(timeout)
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart on port {self.port}: {done.stderr}{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        log = self.directory / "postgres.log" if self.directory else None
        return log.read_text(errors="replace")[-chars:] if log and log.exists() else ""

    def stop(self) -> None:
        if self._started and self.directory is not None:
            done = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.directory / "data"), timeout=60)
            if done.returncode != 0:  # last resort: the postmaster's pid from its pid file
                pid_file = self.directory / "data" / "postmaster.pid"
                if pid_file.exists():
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
                    time.sleep(1)
            self._started = False
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self.directory = None

    # -- databases ----------------------------------------------------------------
    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements in autocommit (CREATE/DROP DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, password=PASSWORD,
                             dbname=database, autocommit=True, connect_timeout=10) as connection:
            for statement in statements:
                connection.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str) -> str:
        """A new empty database (dropped first if it exists); returns its URL."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        return self.url(name)

    def reset_database(self, name: str) -> str:
        """Empty ``name`` (its public schema dropped and recreated), creating it when missing."""
        import psycopg

        try:
            self.execute("DROP SCHEMA public CASCADE", database=name)
        except psycopg.OperationalError:
            return self.create_database(name)
        try:  # public as a new database has it (PostgreSQL 14+: owned by the database owner, USAGE for all)
            self.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner", database=name)
        except psycopg.errors.UndefinedObject:  # PostgreSQL 13 and older
            self.execute("CREATE SCHEMA public", database=name)
        self.execute("GRANT USAGE ON SCHEMA public TO PUBLIC", database=name)
        return self.url(name)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
