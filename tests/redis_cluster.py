"""Start a throwaway three-node Redis Cluster on 127.0.0.1 (for cluster-safety tests).

Three ``redis-server --cluster-enabled yes`` on free loopback ports, joined by
``redis-cli --cluster create`` (masters only, no replicas), so the 16384 slots are
spread over three nodes: a script or MULTI whose keys span slots fails with CROSSSLOT.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.redis_server import RedisServer


class RedisClusterNodes:
    """Three cluster nodes; ``startup_nodes`` is what a cluster client connects to."""

    def __init__(self, count: int = 3) -> None:
        self.nodes = [RedisServer(port=_free_cluster_port()) for _ in range(count)]

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, timeout: float = 30.0) -> "RedisClusterNodes":
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found (it comes with redis-server).")
        try:
            for node in self.nodes:
                _start_cluster_node(node)
            subprocess.run(
                [cli, "--cluster", "create", *(f"{self.host}:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                info = subprocess.run([cli, "-h", self.host, "-p", str(self.ports[0]), "cluster", "info"],
                                      capture_output=True, text=True, timeout=5).stdout
                if "cluster_state:ok" in info:
                    return self
                time.sleep(0.1)
            raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "RedisClusterNodes":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _start_cluster_node(node: RedisServer) -> None:
    """RedisServer.start with cluster options (same temp dir, loopback only)."""
    import tempfile

    if node.binary is None:
        raise RuntimeError("redis-server not found.")
    node._tmpdir = tempfile.TemporaryDirectory(prefix="kefu-redis-cluster-")
    directory = Path(node._tmpdir.name)
    node.process = subprocess.Popen(
        [node.binary, "--bind", node.host, "--port", str(node.port), "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
         "--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
         "--cluster-node-timeout", "5000", "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            log = directory / "redis.log"
            details = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"redis-server (cluster node) exited early: {details}")
        if node._ping():
            return
        time.sleep(0.05)
    raise RuntimeError(f"cluster node on port {node.port} did not answer")
