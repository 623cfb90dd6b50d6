"""Shopper reply latency while knowledge reloads run (issue #15 point 5), before and after.

How: a KB-heavy small project (the NLU-less test bot ``tests/data/projects/turnbot``
plus the test FAQ and ``--entries`` generated FAQ entries, embedding adapter off) is
trained once. For each code tree (``--trees``: this checkout and, by default, a
``git worktree`` of the commit before the change) a real server runs on 127.0.0.1
(``bot.server.run.serve``, one worker, REST channel, API with a generated token),
started with that tree first on ``PYTHONPATH``. Shoppers send ``/greet`` over
``POST /webhooks/rest/webhook`` at a steady ``--rate`` (open loop: a message every
1/rate s whatever the replies do) for ``--baseline`` s; then a FAQ file with
fresh phrasings is written and two ``POST /knowledge/reload`` are sent at once,
and shoppers go on until both reloads have answered plus ``--tail`` s. Each reply
is timed and classed as ``idle`` (sent before the reloads) or ``reload`` (sent
while a reload ran). The trees run one after the other in the same invocation on
the same machine.

The machine is shared (2 cores, several people): the figures carry the load
average at start and end; compare the trees within one run.

    python benchmarks/kb_reload_latency.py --old-commit cc3127e
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "data" / "projects" / "turnbot"
KB_SMALL = REPO / "tests" / "data" / "knowledge" / "small"
RESULTS = REPO / "benchmarks" / "results" / "kb_reload_latency.json"

LAUNCHER = """
import functools, sys
import bot
from bot.agent import create_agent_for_server
from bot.server.run import serve
from connectors.rest import RestInput
model, project, port, token = sys.argv[1:5]
print("kefu from", bot.__file__, flush=True)
serve(functools.partial(create_agent_for_server, model, None, project), host="127.0.0.1", port=int(port),
      input_channels=[RestInput()], auth_token=token, project_root=project, motd=False, enable_api=True)
"""


def auth_headers(token: str) -> dict[str, str]:
    """The header for today's kefu; the ``?token=`` sent beside it is for the older tree run side by side."""
    return {"Authorization": f"Bearer {token}"}


def faq(n: int, seed: str) -> str:
    lines = []
    for i in range(n):
        lines += [f"- id: bulk_{seed}_{i}", "  questions:", "    en:",
                  f"      - How do I look after product {seed}-{i} in the winter season?",
                  f"      - Care instructions for item {seed}-{i}, batch {i * 13}",
                  "  answers:", f"    en: Wash item {seed}-{i} by hand."]
    return "\n".join(lines) + "\n"


def make_project(target: Path, entries: int) -> Path:
    from bot.model.training import train

    root = target / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", "models"))
    shutil.copytree(KB_SMALL, root / "knowledge_base")
    (root / "knowledge_base" / "bulk.yml").write_text(faq(entries, "base"), encoding="utf-8")
    config = root / "config.yml"
    config.write_text(config.read_text(encoding="utf-8") + "knowledge:\n  adapter: false\n", encoding="utf-8")
    result = train(root=root, out=root / "models")
    assert result.model_path is not None
    return Path(result.model_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": round(statistics.median(values), 4),
            "p99_s": round(percentile(values, 99), 4), "max_s": round(max(values), 4)}


async def drive(base: str, token: str, project: Path, args: argparse.Namespace, tag: str) -> dict:
    results: list[tuple[str, float]] = []
    reload_window: list[float] = []  # [start, end]
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        async def shopper(i: int, phase_of) -> None:
            started = time.perf_counter()
            resp = await client.post("/webhooks/rest/webhook", json={"sender": f"s{i % 50}", "message": "/greet"})
            resp.raise_for_status()
            results.append((phase_of(started), time.perf_counter() - started))

        def phase_of(t: float) -> str:
            if not reload_window:
                return "idle"
            if len(reload_window) == 1 or t <= reload_window[1]:
                return "reload"
            return "after"

        async def reloads() -> list[dict]:
            await asyncio.sleep(args.baseline)
            (project / "knowledge_base" / "bulk.yml").write_text(faq(args.entries, tag), encoding="utf-8")
            reload_window.append(time.perf_counter())
            answers = await asyncio.gather(*(client.post("/knowledge/reload", params={"token": token}, headers=auth_headers(token))
                                             for _ in range(2)))
            reload_window.append(time.perf_counter())
            return [{"status": r.status_code, "entries": r.json().get("entries")} for r in answers]

        reload_task = asyncio.create_task(reloads())
        tasks = []
        i = 0
        start = time.perf_counter()
        while True:
            tasks.append(asyncio.create_task(shopper(i, phase_of)))
            i += 1
            if reload_task.done() and time.perf_counter() - reload_window[1] > args.tail:
                break
            next_at = start + i / args.rate
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*tasks)
        reload_answers = await reload_task
    by_phase = {p: [lat for ph, lat in results if ph == p] for p in ("idle", "reload", "after")}
    return {"reloads": reload_answers, "reload_seconds": round(reload_window[1] - reload_window[0], 2),
            **{p: summary(v) for p, v in by_phase.items()}}


def run_tree(tree: Path, model: Path, project: Path, args: argparse.Namespace, tag: str) -> dict:
    port, token = free_port(), secrets.token_urlsafe(16)
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(project.parent / f"server-{tag}.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(model), str(project), str(port), token],
                            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(base + "/status", params={"token": token}, headers=auth_headers(token), timeout=2).json().get("model_id"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"server for {tree} exited; see {log.name}")
            time.sleep(0.5)
        out = asyncio.run(drive(base, token, project, args, tag))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    out["served_from"] = (project.parent / f"server-{tag}.log").read_text().splitlines()[0:1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-commit", default="cc3127e", help="the 'before' commit (a git worktree is made)")
    parser.add_argument("--entries", type=int, default=400, help="generated FAQ entries (2 phrasings each)")
    parser.add_argument("--rate", type=float, default=5.0, help="shopper messages per second")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of shoppers before the reloads")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of shoppers after the reloads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kefu-kbreload-") as tmp:
        tmp_path = Path(tmp)
        old_tree = tmp_path / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old_tree),
                        args.old_commit], check=True)
        try:
            load_start = os.getloadavg()
            model = make_project(tmp_path, args.entries)
            project = tmp_path / "project"
            runs = {}
            for name, tree in (("before", old_tree), ("after", REPO)):
                print(f"running {name} ({tree}) ...", flush=True)
                runs[name] = run_tree(tree, model, project, args, name)
                print(json.dumps(runs[name], indent=2), flush=True)
            load_end = os.getloadavg()
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report = {
        "benchmark": "kb_reload_latency",
        "what": "shopper REST reply latency (s) before, during and after two concurrent POST /knowledge/reload",
        "before_commit": args.old_commit, "after_commit": commit,
        "settings": {"entries": args.entries, "rate_per_s": args.rate, "baseline_s": args.baseline,
                     "tail_s": args.tail},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in load_end],
                    "note": "shared 2-core machine; compare before/after within this run"},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
