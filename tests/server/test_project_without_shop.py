"""A project without the demo shop (like every Rasa example bot) runs as a real server.

The engine reaches shop data only through endpoints.yml `ports:`; a project
that names none has its own `actions` package (no `actions/shop`) and must
start, answer, and stop on a signal with no traceback in its log.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.model.training import train

REPO_ROOT = Path(__file__).resolve().parents[2]
TURNBOT = REPO_ROOT / "tests" / "data" / "projects" / "turnbot"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """turnbot (its own rasa_sdk `actions` package, no shop, no endpoints.yml), trained."""
    root = tmp_path_factory.mktemp("no-shop") / "turnbot"
    shutil.copytree(TURNBOT, root, ignore=shutil.ignore_patterns("__pycache__", "models"))
    assert not (root / "actions" / "shop").exists() and not (root / "endpoints.yml").exists()
    result = train(root=root, out=root / "models")
    assert result.model_path is not None
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, sender: str, message: str) -> list[dict]:
    body = json.dumps({"sender": sender, "message": message}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/rest/webhook", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_project_without_shop_starts_serves_and_stops_without_traceback(project: Path, tmp_path: Path,
                                                                         stop_signal: signal.Signals) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("KEFU_SHOP_URL", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--model", "models", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        replies = None
        deadline = time.monotonic() + 120
        while replies is None and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited early ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                replies = _post(port, "no-shop", "/count")
            except OSError:
                time.sleep(0.3)
        assert replies is not None, f"no answer within 120s:\n{log_path.read_text()[-3000:]}"
        assert [r.get("text") for r in replies] == ["Count 1"]  # the project's own custom action ran

        proc.send_signal(stop_signal)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60s after {stop_signal.name}:\n{log_path.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert returncode == 0, f"exit status {returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text, text
    assert "actions.shop" not in text


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("after", ["Starting worker", "Goin' Fast"])
@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
def test_server_stops_within_10s_on_sigterm_during_start_up(project: Path, tmp_path: Path, after: str,
                                                             delay: float) -> None:
    """A SIGTERM while workers are still starting (before Sanic's start-up acks) ends the
    server and all its processes within 10 s (it spun at 60 % CPU until SIGKILL before)."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--model", "models", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while after not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, f"server exited early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never logged {after!r}:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 10 s after SIGTERM:\n{log_path.read_text()[-3000:]}")
        end = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "a worker outlived the server:\n" + subprocess.run(["ps", "-o", "pid,etime,stat,args", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
