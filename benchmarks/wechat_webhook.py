"""WeChat webhook benchmark: requests/s and latency of signed pushes end to end.

Starts the real server (``python -m bot run``) on 127.0.0.1 with the turnbot test model
and a ``wechat`` section in credentials.yml, then posts signed text pushes (``/count``,
which runs a rasa_sdk action and reads/writes a slot) exactly as WeChat does — in
plaintext or safe (AES) mode — from ``--concurrency`` shoppers for ``--duration``
seconds. Each push must come back as a passive XML reply within WeChat's 5 s; the
script reports requests/s, median and p99 latency, and errors (non-200, no passive
reply, or slower than 5 s).

    .venv/bin/python benchmarks/wechat_webhook.py --concurrency 20 --duration 20 --mode safe

Results are printed and appended to benchmarks/results/wechat_webhook.json.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.dialogue_turns import PROJECT, Server, train_model  # noqa: E402
from connectors.wechat.crypto import MessageCrypto, compute_signature, random_nonce  # noqa: E402
from connectors.wechat.messages import parse_xml  # noqa: E402

WEBHOOK = "/webhooks/wechat/webhook"
TOKEN, APP_ID, AES_KEY = "benchtoken", "wxbench0000000001", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "wechat_webhook.json"
_msg_ids = itertools.count(10_000_000)


def credentials_yaml(mode: str) -> str:
    return (
        "wechat:\n"
        f"  app_id: {APP_ID}\n  app_secret: unused\n  token: {TOKEN}\n"
        f"  encoding_aes_key: {AES_KEY}\n  mode: {mode}\n"
        "  api_base: http://127.0.0.1:9\n  reply_timeout: 4.5\n"
    )


def signed_push(openid: str, text: str, mode: str, crypto: MessageCrypto) -> tuple[str, bytes]:
    xml = (
        f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{next(_msg_ids)}</MsgId></xml>"
    )
    ts, nonce = str(int(time.time())), random_nonce(16)
    query = f"signature={compute_signature(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid={openid}"
    if mode == "plaintext":
        return query, xml.encode()
    encrypted = crypto.encrypt(xml)
    query += f"&encrypt_type=aes&msg_signature={compute_signature(TOKEN, ts, nonce, encrypted)}"
    return query, f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()


def reply_text(body: bytes, crypto: MessageCrypto) -> str | None:
    try:
        fields = parse_xml(body)
        if "Encrypt" in fields:
            fields = parse_xml(crypto.decrypt(fields["Encrypt"]))
        return fields.get("Content")
    except Exception:
        return None


async def shopper(index: int, url: str, mode: str, deadline: float, crypto: MessageCrypto,
                  latencies: list[float], errors: list[str]) -> None:
    openid = f"oBench{index:05d}"
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            query, body = signed_push(openid, "/count", mode, crypto)
            started = time.monotonic()
            try:
                resp = await client.post(f"{url}{WEBHOOK}?{query}", content=body)
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
                continue
            elapsed = time.monotonic() - started
            latencies.append(elapsed)
            text = reply_text(resp.content, crypto) if resp.status_code == 200 else None
            if resp.status_code != 200:
                errors.append(f"HTTP {resp.status_code}")
            elif not text or not text.startswith("Count"):
                errors.append("no passive reply")
            elif elapsed > 5.0:
                errors.append("slower than 5 s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kefu-wechat-bench-") as tmp:
        work = Path(tmp)
        model = Path(args.model) if args.model else train_model(work / "models")
        (work / "endpoints.yml").write_text(f"tracker_store:\n  type: sql\n  url: sqlite:///{work / 'trackers.db'}\n")
        (work / "no-credentials.yml").write_text(credentials_yaml(args.mode))  # Server reads this name
        server = Server(model, work / "endpoints.yml", args.workers, work)
        try:
            await wait_ready(server)
            crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
            latencies: list[float] = []
            errors: list[str] = []
            started = time.monotonic()
            deadline = started + args.duration
            await asyncio.gather(*(shopper(i, server.url, args.mode, deadline, crypto, latencies, errors)
                                   for i in range(args.concurrency)))
            wall = time.monotonic() - started
        finally:
            server.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    return {
        "mode": args.mode,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "duration_s": round(wall, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1) if wall else 0,
        "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


async def wait_ready(server: Server, timeout: float = 120.0) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() - started < timeout:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.tail()}")
            try:
                if (await client.get(server.url + "/webhooks/wechat/")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"server not ready within {timeout}s:\n{server.tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["plaintext", "safe"], default="safe")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model", default=None, help=f"model archive (default: train {PROJECT.name})")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    history.append(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(history, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
