"""``GET /health/live`` (process up, loop turning) and ``GET /health/ready`` (able to answer).

Load balancers and Kubernetes probe these, so both are public; they say which check
failed and how long each took, never a URL, host, exception message or model path.
Rasa's ``/`` (hello) and ``/status`` (the loaded model, behind ``status:read``) keep their
meanings.

Ready (200) means this worker can answer a shopper now: a model is loaded, the tracker
store answers a read, the lock store answers (Redis: ``PING``), the action server answers
``GET /health`` when endpoints.yml names one, and every feature's ``health()`` is ok.
Otherwise 503 with the same body. Results are kept :data:`READY_CACHE_S` so a probe storm
does not become a store storm.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Awaitable, Callable

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.web.auth import public

CHECK_TIMEOUT_S = 2.0
READY_CACHE_S = 1.0
STALL_AFTER_S = 10.0  # the worker monitor has not ticked for this long: its loop was blocked
PROBE_SENDER_ID = "__kefu_readiness_probe__"  # read, never written
WORKER_NAME_ENV = "KEFU_WORKER_NAME"  # set by the operator (scripts/cluster.py): which worker answered

Check = Callable[[], Awaitable[dict[str, Any] | None]]


async def _run_check(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        result: dict[str, Any] = {"ok": True, **(extra or {})}
    except asyncio.TimeoutError:
        result = {"ok": False, "error": "timeout"}
    except Exception as e:  # the class only: a message may hold a URL or a password
        result = {"ok": False, "error": type(e).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _kind(store: Any) -> str:
    name = type(store).__name__.lower()
    for kind in ("redis", "sql", "memory", "mongo", "postgres"):
        if kind in name:
            return kind
    return "custom"


async def _tracker_store(agent: Any) -> dict[str, Any]:
    await agent.tracker_store.retrieve(PROBE_SENDER_ID)
    return {"kind": _kind(agent.tracker_store)}


async def _lock_store(agent: Any) -> dict[str, Any]:
    store = agent.lock_store
    redis = getattr(store, "redis", None)
    if redis is not None:
        await redis.ping()
    return {"kind": _kind(store)}


async def _action_server(endpoint: Any) -> dict[str, Any]:
    from bot.dialogue.actions.remote import action_http_client, endpoint_timeout

    url = str(endpoint.url)
    health = url.rsplit("/", 1)[0] + "/health" if url.rstrip("/").endswith("/webhook") else url
    answer = await action_http_client(endpoint_timeout(endpoint)).get(health)
    if answer.status_code >= 500:
        raise ConnectionError(f"status {answer.status_code}")
    return {"status": answer.status_code}


async def readiness(app: Any) -> tuple[bool, dict[str, Any]]:
    """Every check of this worker, run at once; ready when all are ok."""
    agent = getattr(app.ctx, "agent", None)
    checks: dict[str, dict[str, Any]] = {}
    loaded = bool(agent is not None and agent.is_ready())
    checks["model"] = {"ok": loaded}
    pending: dict[str, Awaitable[dict[str, Any]]] = {}
    if agent is not None:
        pending["tracker_store"] = _run_check(lambda: _tracker_store(agent))
        pending["lock_store"] = _run_check(lambda: _lock_store(agent))
        endpoint = getattr(getattr(agent, "endpoints", None), "action_endpoint", None)
        if endpoint is not None and getattr(endpoint, "url", None):
            pending["action_server"] = _run_check(lambda: _action_server(endpoint))
    else:
        checks["tracker_store"] = checks["lock_store"] = {"ok": False, "error": "no_agent"}
    results = await asyncio.gather(*pending.values())
    checks.update(zip(pending.keys(), results))
    features = getattr(app.ctx, "features", None)
    if features is not None:
        for name, health in features.health().items():
            checks[f"feature:{name}"] = {"ok": bool(health.ok)}
    return all(c["ok"] for c in checks.values()), checks


def create_health_blueprint() -> Blueprint:
    bp = Blueprint("kefu_health")
    cache: dict[str, Any] = {"at": -1e9, "result": None}

    @bp.get("/health/live")
    @public
    async def live(request: Request) -> HTTPResponse:
        monitor = getattr(request.app.ctx, "worker_monitor", None)
        body: dict[str, Any] = {"status": "ok"}
        if monitor is not None:
            body["event_loop_lag_ms"] = round(monitor.lag * 1000, 1)
            stalled = time.monotonic() - monitor.last_tick
            if getattr(request.app.ctx, "worker_monitor_task", None) is not None and stalled > STALL_AFTER_S:
                body.update(status="stalled", seconds_since_tick=round(stalled, 1))
                return response.json(body, status=503)
        return response.json(body)

    @bp.get("/health/ready")
    @public
    async def ready(request: Request) -> HTTPResponse:
        now = time.monotonic()
        if cache["result"] is None or now - cache["at"] > READY_CACHE_S:
            cache["result"] = await readiness(request.app)
            cache["at"] = time.monotonic()
        ok, checks = cache["result"]
        body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks}
        if os.environ.get(WORKER_NAME_ENV):
            body["worker"] = os.environ[WORKER_NAME_ENV]
        return response.json(body, status=200 if ok else 503)

    return bp


def install_worker_name(app: Any) -> None:
    """With ``KEFU_WORKER_NAME`` set, every response names its worker (``X-Kefu-Worker``).

    Behind a load balancer this shows where a request landed (operators, the cluster test);
    off unless the operator names the workers, so nothing about the topology leaks by default.
    """
    name = os.environ.get(WORKER_NAME_ENV)
    if not name:
        return

    @app.on_response
    async def add_worker_name(request: Any, resp: HTTPResponse) -> None:
        if resp is not None:
            resp.headers.setdefault("X-Kefu-Worker", name)
