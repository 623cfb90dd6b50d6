"""``python -m bot run --workers 2``: one ``/metrics`` scrape covers both worker processes.

Real processes: the CLI starts Sanic's manager and two workers, which write their figures
to the multiprocess folder the CLI prepared; whichever worker answers a scrape must report
every request either worker served, and one ``kefu_worker_up`` series per worker ``pid``.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import free_port

PROJECT = Path(__file__).resolve().parent / "data" / "ready_project"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ready_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.model.training import train

    return train(root=PROJECT, out=tmp_path_factory.mktemp("ready-model")).model_path


@pytest.mark.slow
def test_two_workers_one_scrape_counts_every_request(ready_model: Path, tmp_path: Path) -> None:
    port, token = free_port(), secrets.token_urlsafe(32)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["TMPDIR"] = str(tmp_path)  # the CLI's multiprocess folder lands here
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--root", str(PROJECT), "--model", str(ready_model), "--port", str(port),
         "--workers", "2", "--auth-token", token, "--quiet"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        pids: set[str] = set()
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline and len(pids) < 2:  # both workers up and ready
                try:
                    text = client.get(url + "/metrics", headers=headers).text
                    pids = {s.labels.get("pid") for f in text_string_to_metric_families(text)
                            for s in f.samples if s.name == "kefu_worker_model_ready" and s.value == 1}
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            assert len(pids) == 2, f"two ready workers expected, saw {pids}"
            sent = 40
            for _ in range(sent):
                # a new connection each time: either worker answers (30 s: a 5 s limit failed once at load 4-6)
                with httpx.Client(timeout=30) as fresh:
                    assert fresh.get(url + "/health/ready").status_code == 200

            def total() -> float:
                text = client.get(url + "/metrics", headers=headers).text
                return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                           if s.name == "kefu_http_request_duration_seconds_count"
                           and s.labels.get("route") == "/health/ready")

            # recorded in response middleware, before the response is written: no settling needed
            totals = [total() for _ in range(4)]
            assert totals == [sent] * 4, totals  # the same total whichever worker answered the scrape
        folder = [p for p in tmp_path.iterdir() if p.name.startswith("kefu-prometheus-")]
        assert len(folder) == 1 and list(folder[0].glob("histogram_*.db"))
        process.terminate()
        assert process.wait(30) == 0
        assert not folder[0].exists()  # the manager removed the folder it made
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stderr is not None:
            process.stderr.close()


def test_a_multiprocess_folder_that_is_not_there_yet_is_made_at_start(tmp_path: Path) -> None:
    """The image sets PROMETHEUS_MULTIPROC_DIR=/tmp/kefu-metrics; a fresh container's /tmp (or a
    Kubernetes emptyDir) has no such folder, and prometheus-client opens its files at import."""
    folder = tmp_path / "fresh" / "kefu-metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", "import bot.shared.metrics as m; m.NLU_PARSE_SECONDS.observe(0.01)"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(folder.glob("histogram_*.db"))
