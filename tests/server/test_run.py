"""serve()/build_app: the agent is created per worker at start, never at import."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from bot.server.run import ServerOptions, build_app, serve

REPO_ROOT = Path(__file__).resolve().parents[2]

CREATED: list[str] = []


class TinyAgent:
    domain = None
    model_id = "tiny"
    model_path = "tiny.tar.gz"
    fingerprint: dict = {}

    def __init__(self) -> None:
        self.closed = False

    def is_ready(self) -> bool:
        return True


def make_agent() -> TinyAgent:
    CREATED.append("sync")
    return TinyAgent()


async def make_agent_async() -> TinyAgent:
    CREATED.append("async")
    return TinyAgent()


@pytest.mark.parametrize("factory,kind", [(make_agent, "sync"), (make_agent_async, "async")])
def test_build_app_creates_agent_in_before_server_start(factory, kind):
    CREATED.clear()
    app = build_app(factory, ServerOptions(app_name=f"kefu-run-test-{kind}", enable_api=True))
    assert app.ctx.agent is None and CREATED == []  # nothing heavy before start
    _, resp = app.test_client.get("/status")
    assert CREATED == [kind]
    assert resp.status == 200
    assert resp.json["model_id"] == "tiny"


def test_build_app_passes_options():
    app = build_app(make_agent, ServerOptions(auth_token="t0k", app_name="kefu-run-test-auth", enable_api=True))
    _, denied = app.test_client.get("/status")
    assert denied.status == 401


def test_build_app_is_closed_by_default():
    """Without enable_api no management route exists (it was served, unauthenticated, before)."""
    app = build_app(make_agent, ServerOptions(app_name="kefu-run-test-closed"))
    _, status = app.test_client.get("/status")
    assert status.status == 404
    _, tracker = app.test_client.get("/conversations/someone/tracker")
    assert tracker.status == 404


def test_build_app_sets_request_timeout():
    app = build_app(make_agent, ServerOptions(app_name="kefu-run-test-timeout", request_timeout=7))
    assert app.config.REQUEST_TIMEOUT == 7


def test_serve_refuses_an_open_api_before_binding():
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="--auth-token or --jwt-secret"):
        serve(make_agent, host="127.0.0.1", port=_free_port(), enable_api=True)
    with pytest.raises(ConfigError, match="not a loopback"):
        serve(make_agent, host="0.0.0.0", port=_free_port(), enable_api=True, dev_open_api=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_SCRIPT = """
import os
from bot.server.run import serve


class PidAgent:
    domain = None
    model_path = "pid.tar.gz"
    fingerprint = {}

    def __init__(self):
        self.model_id = str(os.getpid())

    def is_ready(self):
        return True


def make_agent():
    return PidAgent()


if __name__ == "__main__":
    serve(make_agent, host="127.0.0.1", port=int(os.environ["KEFU_TEST_PORT"]), workers=2, motd=False,
          enable_api=True, dev_open_api=True)
"""


def test_serve_with_two_workers_answers_from_both(tmp_path):
    port = _free_port()
    script = tmp_path / "serve_two.py"
    script.write_text(textwrap.dedent(SERVER_SCRIPT))
    env = {**os.environ, "KEFU_TEST_PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        pids: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 2:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"server exited early ({proc.returncode}):\n{out[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                    pids.add(json.loads(r.read())["model_id"])
            except OSError:
                time.sleep(0.2)
        assert len(pids) == 2, f"expected answers from 2 workers, got {pids}"
        assert str(proc.pid) not in pids  # the agent lives in workers, not the manager
    finally:
        # The whole process group: a worker must not outlive the test if the manager is killed.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
