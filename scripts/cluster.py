"""Run the production topology on one machine: nginx -> N kefu workers -> PostgreSQL + Redis.

Each worker is a separate ``python -m bot run`` process with its own port and nothing in
memory shared with the others (as if each were a machine): conversations, handoffs, the
shop and the audit log live in PostgreSQL; locks, the event broker, the handoff queue and
agent presence, the widget outbox and the lifecycle-trigger store and queue live in Redis;
custom actions run in one action server (``python -m bot run actions``). nginx is rendered
from ``deploy/nginx/kefu.conf`` (ip_hash, WebSocket upgrade) with the workers' ports, and
the workers' endpoints.yml from ``deploy/endpoints.cluster.yml``. Every worker gets the same
secrets (API token, JWT secret, handoff secret, widget session secret, agent passwords).

    python scripts/cluster.py --workers 3 --port 8080 --state-dir .kefu/cluster

waits until ``/health/ready`` answers through nginx, prints the URLs and the secrets file,
and stops everything on Ctrl-C or SIGTERM. Tests and benchmarks use :class:`Cluster` (a
context manager) and its fault helpers (kill a worker, restart Redis, halt PostgreSQL, ...).

The project is the demo in the repository root (its trained model in ``models/``: ``python -m
bot train`` first). The state dir holds a project folder made of links to the repository's
project files plus the generated endpoints.yml, credentials.yml and triggers.yml (a caller may
pass its own journeys), the logs, Redis's append-only file and ``secrets.env`` (mode 0600).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.postgres_server import PostgresServer, free_port  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

logger = logging.getLogger("kefu.cluster")

NGINX_TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "kefu.conf"
ENDPOINTS_TEMPLATE = REPO_ROOT / "deploy" / "endpoints.cluster.yml"
# project files the workers read from their --root (linked, never changed)
PROJECT_FILES = ("config.yml", "domain.yml", "nlu_data", "data", "knowledge_base", "shop.yml", "alerts.yml",
                 "models")  # actions: imported from the repository (PYTHONPATH)
DATABASE = "kefu"
AGENTS = ("alice", "sam")  # config.yml's agent and supervisor
READY_TIMEOUT_S = 300.0  # workers load torch + the model at once on a busy 2-core machine


def find_nginx() -> Optional[str]:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def http_get(url: str, timeout: float = 3.0, headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; status 0 when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers or {}), e.read()
    except (OSError, ValueError):
        return 0, {}, b""


@dataclass
class Process:
    """One child process of the cluster (its own session, so a kill reaches its children too)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    port: int = 0
    popen: Optional[subprocess.Popen[bytes]] = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1} at {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=str(self.cwd), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process's group (the process and anything it forked)."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)
        self._reap_group()

    def kill(self) -> None:
        """kill -9, no goodbye (fault injection)."""
        if self.popen is None:
            return
        self.signal(signal.SIGKILL)
        self.popen.wait(10)
        self._reap_group()

    def _reap_group(self) -> None:
        if self.popen is not None:
            try:  # children that outlived their parent (same group id)
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class Secrets:
    """The secrets every worker shares; generated per cluster, written to secrets.env (0600)."""

    auth_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    handoff_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    widget_session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    agent_passwords: dict[str, str] = field(
        default_factory=lambda: {agent: secrets.token_urlsafe(18) for agent in AGENTS})

    def env(self) -> dict[str, str]:
        values = {
            "KEFU_AUTH_TOKEN": self.auth_token,
            "KEFU_JWT_SECRET": self.jwt_secret,
            "KEFU_HANDOFF_SECRET": self.handoff_secret,
            "KEFU_WIDGET_SESSION_SECRET": self.widget_session_secret,
        }
        for agent, password in self.agent_passwords.items():
            values[f"KEFU_AGENT_{agent.upper()}_PASSWORD"] = password
        return values


class Cluster:
    """The whole topology as child processes; ``with Cluster(state_dir, workers=3) as c: ...``."""

    def __init__(self, state_dir: str | Path, workers: int = 3, port: Optional[int] = None,
                 model: str | Path | None = None, triggers_yml: Optional[str] = None,
                 endpoints_extra: Optional[dict[str, Any]] = None, log_level: str = "WARNING",
                 seed_shop: bool = True, nice: int = 0) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.state_dir = Path(state_dir).resolve()
        self.n_workers = workers
        self.port = port or free_port()
        self.model = Path(model) if model else REPO_ROOT / "models"
        self.triggers_yml = triggers_yml
        self.endpoints_extra = endpoints_extra or {}
        self.log_level = log_level
        self.seed_shop = seed_shop
        self.nice = nice
        self.secrets = Secrets()
        self.redis: Optional[RedisServer] = None
        self.postgres: Optional[PostgresServer] = None
        self.actions: Optional[Process] = None
        self.workers: list[Process] = []
        self.nginx: Optional[Process] = None
        self.project = self.state_dir / "project"
        self.logs = self.state_dir / "logs"

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        """nginx, the address shoppers and agents use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url(DATABASE, driver="postgresql")

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    # ------------------------------------------------------------------ start
    def start(self) -> "Cluster":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if not any(self.model.glob("*.tar.gz")) and not self.model.is_file():
            raise RuntimeError(f"No trained model in {self.model}. Fix: run `python -m bot train` in {REPO_ROOT}.")
        nginx = find_nginx()
        if nginx is None:
            raise RuntimeError("nginx not found. Fix: `apt-get install -y nginx` (Debian's package).")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        started = time.monotonic()
        self.redis = RedisServer(directory=self.state_dir / "redis",
                                 extra_args=("--appendonly", "yes", "--appendfsync", "everysec")).start()
        self.postgres = PostgresServer().start()
        self.postgres.create_database(DATABASE)
        logger.info("Redis on %s, PostgreSQL on %s (%.1f s)", self.redis.port, self.postgres.port,
                    time.monotonic() - started)
        self._write_project()
        self._prepare_database()
        action_port = free_port()
        self.actions = Process("actions", self._python("-m", "bot", "run", "actions", "--port", str(action_port),
                                                       "--log-level", self.log_level),
                               self._env("actions"), REPO_ROOT, self.logs / "actions.log", port=action_port)
        self._write_endpoints(action_port)
        self.actions.start()
        for index in range(self.n_workers):
            name = f"worker{index + 1}"
            port = free_port()
            argv = self._python("-m", "bot", "run", "--root", str(self.project), "--model", str(self.model),
                                "--endpoints", str(self.project / "endpoints.yml"),
                                "--credentials", str(self.project / "credentials.yml"),
                                "--port", str(port), "--enable-api", "--log-level", self.log_level)
            self.workers.append(Process(name, argv, self._env(name), self.project, self.logs / f"{name}.log",
                                        port=port))
        for worker in self.workers:
            worker.start()
        self._write_nginx()
        self.nginx = Process("nginx", [nginx, "-c", str(self.state_dir / "nginx" / "nginx.conf"),
                                       "-p", str(self.state_dir / "nginx"), "-e", str(self.logs / "nginx-error.log")],
                             dict(os.environ), self.state_dir, self.logs / "nginx.log", port=self.port)
        self.nginx.start()
        self.wait_ready()
        logger.info("Cluster ready in %.1f s", time.monotonic() - started)

    def _python(self, *args: str) -> list[str]:
        command = [sys.executable, *args]
        return ["nice", "-n", str(self.nice), *command] if self.nice else command

    def _env(self, name: str) -> dict[str, str]:
        assert self.postgres is not None
        env = dict(os.environ)
        env.update(self.secrets.env())
        env.update({
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # N processes on few cores: no thread storms
            "KEFU_DB_HOST": self.postgres.host, "KEFU_DB_PORT": str(self.postgres.port),
            "KEFU_DB_NAME": DATABASE, "KEFU_DB_USER": "kefu", "KEFU_DB_PASSWORD": _pg_password(),
            "KEFU_SHOP_URL": self.database_url,
            "KEFU_STATE_DIR": str(self.state_dir / "state" / name),  # like a machine's own disk
            "KEFU_WORKER_NAME": name,
            "KEFU_WORKER_START_TIMEOUT_S": "240",  # N workers load the model at once on few cores
        })
        env.pop("KEFU_DATABASE_URL", None)
        return env

    def _write_project(self) -> None:
        """Links to the project's files, plus the files a cluster must change."""
        self.project.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            source, target = REPO_ROOT / name, self.project / name
            if source.exists() and not target.exists():
                target.symlink_to(source)
        triggers = self.triggers_yml if self.triggers_yml is not None else (REPO_ROOT / "triggers.yml").read_text()
        (self.project / "triggers.yml").write_text(triggers, encoding="utf-8")
        from bot.shared.yaml_io import read_yaml_file, to_plain, write_yaml

        credentials = to_plain(read_yaml_file(REPO_ROOT / "credentials.yml")) or {}
        widget = dict(credentials.get("socketio") or {})
        widget.update({"session_persistence": True, "session_secret": "${KEFU_WIDGET_SESSION_SECRET}",
                       "outbox": {"type": "redis", "url": self.redis_url}})
        credentials["socketio"] = widget
        credentials.setdefault("rest", None)
        write_yaml(credentials, self.project / "credentials.yml")
        (self.state_dir / "secrets.env").touch(mode=0o600)
        (self.state_dir / "secrets.env").write_text(
            "".join(f"{k}={v}\n" for k, v in self.secrets.env().items()), encoding="utf-8")

    def _write_endpoints(self, action_port: int) -> None:
        """deploy/endpoints.cluster.yml (PostgreSQL trackers, Redis locks and broker) plus the
        sections features read: handoff, triggers, audit and shop on the shared stores."""
        from bot.shared.yaml_io import read_yaml_file, to_plain, write_yaml

        assert self.redis is not None and self.postgres is not None
        endpoints = to_plain(read_yaml_file(ENDPOINTS_TEMPLATE))
        for key in ("lock_store", "event_broker"):  # the local Redis has no password (loopback only)
            endpoints[key].pop("password", None)
            endpoints[key]["url"], endpoints[key]["port"] = self.redis.host, self.redis.port
        endpoints["action_endpoint"] = {"url": f"http://127.0.0.1:{action_port}/webhook"}
        database = f"postgresql://kefu:${{KEFU_DB_PASSWORD}}@{self.postgres.host}:{self.postgres.port}/{DATABASE}"
        project = to_plain(read_yaml_file(REPO_ROOT / "endpoints.yml")) or {}
        if project.get("ports"):
            endpoints["ports"] = project["ports"]
        endpoints["audit"] = {"url": database}
        endpoints["shop"] = {"type": "sql", "url": database}
        endpoints["handoff"] = {"store_url": database, "queue": {"type": "redis", "url": self.redis_url}}
        endpoints["triggers"] = {"file": "triggers.yml", "store": "redis", "url": self.redis_url}
        for key, value in self.endpoints_extra.items():
            if isinstance(value, dict) and isinstance(endpoints.get(key), dict):
                endpoints[key] = {**endpoints[key], **value}
            else:
                endpoints[key] = value
        write_yaml(endpoints, self.project / "endpoints.yml")

    def _prepare_database(self) -> None:
        """``python -m bot db upgrade`` (every store's tables), then the demo shop's data."""
        env = self._env("migrate")
        steps = [("db upgrade", self._python("-m", "bot", "db", "upgrade", "--url", self.database_url))]
        if self.seed_shop:
            steps.append(("shop seed", self._python("-m", "actions.shop", "seed", "--small", "--url",
                                                    self.database_url)))
        for label, argv in steps:
            done = subprocess.run(argv, env=env, cwd=str(self.project), capture_output=True, text=True, timeout=600)
            (self.logs / f"{label.replace(' ', '-')}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                raise RuntimeError(f"`{label}` failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")

    def _write_nginx(self) -> None:
        """deploy/nginx/kefu.conf with this cluster's worker ports, inside a minimal nginx.conf."""
        folder = self.state_dir / "nginx"
        for sub in ("", "temp", "logs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(folder / sub, 0o777)  # nginx's workers run as nobody when started by root
        site = NGINX_TEMPLATE.read_text()
        servers = "".join(f"    server 127.0.0.1:{w.port} max_fails=2 fail_timeout=5s;\n" for w in self.workers)
        lines, replaced = [], False
        for line in site.splitlines(keepends=True):
            if line.strip().startswith("server kefu:"):
                if not replaced:
                    lines.append(servers)
                    replaced = True
                continue
            if line.strip() == "listen 8080;":
                line = line.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
            lines.append(line)
        if not replaced:
            raise RuntimeError(f"{NGINX_TEMPLATE}: no 'server kefu:...' line to replace with the worker ports.")
        (folder / "kefu.conf").write_text("".join(lines))
        temp = folder / "temp"
        (folder / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {folder / 'nginx.pid'};
error_log {self.logs / 'nginx-error.log'} warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder / 'kefu.conf'};
}}
""")

    # ------------------------------------------------------------------ readiness
    def worker_ready(self, worker: Process) -> bool:
        status, _, _ = http_get(worker.url + "/health/ready", timeout=5)
        return status == 200

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, workers: Optional[list[Process]] = None) -> None:
        """Until every (given) worker is ready, then /health/ready answers through nginx."""
        deadline = time.monotonic() + timeout
        pending = list(workers if workers is not None else self.workers)
        while pending:
            for process in (self.actions, *pending):
                if process is not None and not process.alive():
                    raise RuntimeError(f"{process.name} exited ({process.popen.returncode if process.popen else '?'}):"
                                       f"\n{process.log_tail()}")
            pending = [w for w in pending if not self.worker_ready(w)]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"Not ready within {timeout:.0f} s: {[w.name for w in pending]}\n"
                                   f"{pending[0].log_tail()}")
            if pending:
                time.sleep(1.0)
        while http_get(self.url + "/health/ready")[0] != 200:
            if self.nginx is not None and not self.nginx.alive():
                raise RuntimeError(f"nginx exited:\n{self.nginx.log_tail()}"
                                   f"{(self.logs / 'nginx-error.log').read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("nginx does not answer /health/ready.")
            time.sleep(0.5)

    def source_addresses(self) -> dict[str, str]:
        """A loopback source address per worker: the one nginx's ip_hash sends to that worker.

        ip_hash hashes the first three octets of the client address, so clients on one machine
        bind 127.0.N.1 (all of 127/8 is loopback on Linux) to land on a chosen worker."""
        import http.client

        found: dict[str, str] = {}
        for third in range(1, 250):
            address = f"127.0.{third}.1"
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(address, 0))
            try:
                connection.request("GET", "/health/ready")
                answer = connection.getresponse()
                worker = answer.getheader("X-Kefu-Worker")
                answer.read()
            finally:
                connection.close()
            if answer.status == 200 and worker:
                found.setdefault(worker, address)
            if len(found) == len(self.workers):
                break
        return found

    # ------------------------------------------------------------------ faults (chaos, tests)
    def worker(self, name: str) -> Process:
        return next(w for w in self.workers if w.name == name)

    def restart_worker(self, worker: Process, wait: bool = True) -> None:
        worker.start()
        if wait:
            self.wait_ready(workers=[worker])

    def restart_redis(self, down_s: float = 0.0) -> None:
        """Stop redis-server (SIGTERM: it writes its append-only file) and start it on the same port."""
        assert self.redis is not None
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()

    def halt_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.halt()

    def resume_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.resume()

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """nginx first (no new requests), then workers (they drain), the action server, the stores."""
        processes = [p for p in (self.nginx, *self.workers, self.actions) if p is not None]
        threads = [threading.Thread(target=p.stop) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "widget": f"{self.url}/socket.io/",
            "console": f"{self.url}/console",
            "workers": {w.name: w.url for w in self.workers},
            "actions": self.actions.url if self.actions else None,
            "redis": self.redis.url if self.redis else None,
            "postgres": self.postgres.url(DATABASE).replace(_pg_password(), "***") if self.postgres else None,
            "secrets": str(self.state_dir / "secrets.env"),
            "logs": str(self.logs),
        }


def _pg_password() -> str:
    from tests.postgres_server import PASSWORD

    return PASSWORD


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="kefu server processes (default 3)")
    parser.add_argument("--port", type=int, default=8080, help="nginx port on 127.0.0.1 (default 8080)")
    parser.add_argument("--state-dir", default=str(REPO_ROOT / ".kefu" / "cluster"),
                        help="generated project files, logs, Redis AOF, secrets.env (default .kefu/cluster)")
    parser.add_argument("--model", help="model archive or folder (default: models/)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:  # while starting: unwind, Cluster.start stops what began
        raise KeyboardInterrupt

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, interrupt)
    cluster = Cluster(args.state_dir, workers=args.workers, port=args.port, model=args.model,
                      log_level=args.log_level)
    try:
        try:
            cluster.start()
        except KeyboardInterrupt:
            return 130
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(json.dumps(cluster.describe(), indent=2), flush=True)
        print("Ctrl-C stops everything.", flush=True)
        reported: set[str] = set()
        while not stop.wait(2.0):
            for process in (cluster.nginx, cluster.actions, *cluster.workers):
                if process is not None and not process.alive() and process.name not in reported:
                    reported.add(process.name)  # nginx skips a dead worker; the others keep serving
                    logger.warning("%s exited (code %s); see %s", process.name,
                                   process.popen.returncode if process.popen else "?", process.log_path)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
