"""`python -m bot run` as a stranger meets it: closed by default, the API only behind a token, TLS.

Real servers on free loopback ports, started the way an operator starts them;
the small turnbot project is trained once for the module. Each start costs
seconds, so each test checks several things of one start.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from bot.model.training import train

REPO_ROOT = Path(__file__).resolve().parents[2]
TURNBOT = REPO_ROOT / "tests" / "data" / "projects" / "turnbot"
SECRET_ENV = ("KEFU_AUTH_TOKEN", "KEFU_JWT_SECRET", "KEFU_SSL_PASSWORD")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exposure") / "turnbot"
    shutil.copytree(TURNBOT, root, ignore=shutil.ignore_patterns("__pycache__", "models"))
    assert train(root=root, out=root / "models").model_path is not None
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _request(url: str, body: dict | None = None, *, headers: dict[str, str] | None = None,
             context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextmanager
def running(project: Path, log_path: Path, *args: str, base: str, env: dict[str, str] | None = None,
            context: ssl.SSLContext | None = None) -> Iterator[subprocess.Popen]:
    """``python -m bot run ARGS`` until its REST webhook answers; stopped (whole group) afterwards."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run", *args], cwd=project, env=env or _env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited early ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                status, _ = _request(f"{base}/webhooks/rest/webhook", {"sender": "probe", "message": "/count"},
                                     context=context)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no answer within 120 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.3)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_run_without_enable_api_serves_channels_but_no_management_route(project: Path, tmp_path: Path) -> None:
    """The old default served the whole API, unauthenticated, to anyone reaching the port."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with running(project, tmp_path / "server.log", "--port", str(port), base=base):
        status, body = _request(f"{base}/webhooks/rest/webhook", {"sender": "stranger", "message": "/count"})
        assert status == 200 and json.loads(body)[0]["text"] == "Count 1"  # channels stay open
        assert _request(f"{base}/model/parse", {"text": "hello"})[0] == 404
        assert _request(f"{base}/conversations/stranger/tracker")[0] == 404
        assert _request(f"{base}/conversations/stranger/tracker/events", [{"event": "restart"}])[0] == 404  # type: ignore[arg-type]
        assert _request(f"{base}/status")[0] == 404
        assert _request(f"{base}/version")[0] == 200  # says only which version answers, like Rasa


def test_dev_open_api_on_loopback_starts_open_and_warns(project: Path, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with running(project, log_path, "--enable-api", "--dev-open-api", "--host", "127.0.0.1", "--port", str(port),
                 base=base):
        status, body = _request(f"{base}/model/parse", {"text": "/count"})
        assert status == 200 and json.loads(body)["intent"]["name"] == "count"
    text = log_path.read_text(errors="replace")
    assert "WARNING" in text and "--dev-open-api" in text and "DEVELOPMENT MODE" in text


def _self_signed(folder: Path, password: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 with an encrypted key, made by Debian's openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-passout", f"pass:{password}"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs Debian's openssl (bash scripts/install.sh --test)")
def test_run_serves_tls_api_behind_token_and_writes_log_file(project: Path, tmp_path: Path) -> None:
    """--ssl-certificate/--ssl-keyfile/--ssl-password serve HTTPS (verified against the certificate);
    the token comes from the environment; --log-file gets the workers' lines too."""
    import secrets

    password, token = secrets.token_hex(8), secrets.token_urlsafe(32)
    cert, key = _self_signed(tmp_path, password)
    context = ssl.create_default_context(cafile=str(cert))
    port = _free_port()
    base = f"https://127.0.0.1:{port}"
    log_file = tmp_path / "logs" / "kefu.log"
    env = _env(KEFU_AUTH_TOKEN=token, KEFU_SSL_PASSWORD=password)
    with running(project, tmp_path / "server.log", "--enable-api", "--allow-token-in-url", "--port", str(port),
                 "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), "--log-file", str(log_file),
                 base=base, env=env, context=context):
        assert _request(f"{base}/model/parse", {"text": "/count"}, context=context)[0] == 401
        assert _request(f"{base}/conversations/probe/tracker", context=context)[0] == 401
        wrong = secrets.token_urlsafe(32)
        assert _request(f"{base}/model/parse?token={wrong}", {"text": "/count"}, context=context)[0] == 401
        status, body = _request(f"{base}/model/parse?token={token}", {"text": "/count"}, context=context)
        assert status == 200 and json.loads(body)["intent"]["name"] == "count"
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP is not served on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5).read()
    logged = log_file.read_text(errors="replace")
    assert "Worker ready" in logged and "Agent ready" in logged  # main process and worker both write it
    assert token not in logged and password not in logged
