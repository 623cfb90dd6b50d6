"""Start a throwaway ``redis-server`` on 127.0.0.1 for the test session.

Tests that need Redis use a real server rather than a fake, so Lua scripts, streams and
consumer groups behave as in production. The server listens on a free port, keeps its
files in a temporary directory and persists nothing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

SKIP_ENV = "KEFU_SKIP_REDIS"
INSTALL_HINT = (
    "Install it (Debian/Ubuntu: `apt-get install -y redis-server`), or set "
    f"{SKIP_ENV}=1 to skip the tests marked 'redis'."
)


def find_redis_server() -> Optional[str]:
    """Path of the redis-server binary, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server child process; use as a context manager or call start/stop."""

    def __init__(self, binary: Optional[str] = None, port: Optional[int] = None,
                 directory: Optional[Path] = None, extra_args: tuple[str, ...] = ()) -> None:
        """``directory`` keeps the server's files there (kept after stop, so a restart on the same
        port finds its append-only file); ``extra_args`` are appended (later options win)."""
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._tmpdir: Optional[tempfile.TemporaryDirectory[str]] = None
        self.directory = Path(directory) if directory is not None else None
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        if self.binary is None:
            raise RuntimeError(f"redis-server not found. {INSTALL_HINT}")
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            directory = self.directory
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="kefu-redis-")
            directory = Path(self._tmpdir.name)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", self.host,
                "--port", str(self.port),
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--logfile", str(directory / "redis.log"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = directory / "redis.log"
                details = log.read_text(errors="replace") if log.exists() else ""
                self._cleanup()
                raise RuntimeError(f"redis-server exited early: {error}{details[-2000:]}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s.")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        """Empty every database (between tests)."""
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            reply = sock.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_skipped() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")
