"""``GET /metrics`` in Prometheus' text format, request timing, and each worker's own gauges.

What is exported (names in docs/operations.md, panels in docs/grafana/kefu.json):

- per request: ``kefu_http_request_duration_seconds{route, method, channel, status}`` from
  request/response middleware, labelled by the matched route's *pattern*
  (``/conversations/<conversation_id>/tracker``), never the raw path, so the label set is
  bounded by the router; unmatched paths share ``route="unmatched"``;
- per turn (``bot/shared/metrics.py``): NLU parse, policy prediction and action latency;
- per worker, refreshed every :data:`MONITOR_INTERVAL_S` by a small task: up, model loaded,
  event-loop lag, each feature's ``health()``, the served model's id and fingerprint,
  resident memory, CPU seconds and open files;
- per scrape, read once from the shared stores by the worker that answers (they are the
  same for every worker): handoff queue depth and oldest wait, trigger scheduler jobs
  (due, in flight) and lag, the shop outbox backlog.

Several workers: ``python -m bot run --workers N`` (N > 1) points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start
(:func:`prepare_multiprocess_dir`); every worker writes its figures there and whichever
worker answers a scrape sums them (histograms and counters) or lists them per ``pid``
(worker gauges). One scrape target per server, not per worker.

Who may read it: ``metrics:read`` (the ``monitor`` role, or admin). A server with no
credentials configured (development) answers only loopback clients.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sanic import Blueprint, Request, Sanic, response
from sanic.response import HTTPResponse

from bot.shared import metrics as m
from bot.shared.concurrency import run_blocking
from bot.web.auth import principal_of, requires_scope
from bot.web.errors import DOCS_URL, ErrorResponse
from bot.web.principals import Scope

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MONITOR_INTERVAL_S = 0.5
SOURCE_TIMEOUT_S = 2.0  # a store that does not answer in time is reported down, the scrape goes on
OUTBOX_PENDING_CAP = 1000  # the shop outbox backlog is counted up to this many rows
# Read per scrape from the shared stores (present when the feature runs); tests check the dashboard against them.
SHARED_STATE_METRICS = ("kefu_metrics_source_up", "kefu_handoff_queue_depth", "kefu_handoff_oldest_wait_seconds",
                        "kefu_handoff_waiting", "kefu_trigger_jobs", "kefu_trigger_scheduler_lag_seconds",
                        "kefu_shop_outbox_pending")


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(workers: int, base: str | None = None) -> str | None:
    """Before the workers start: a fresh, empty multiprocess folder when there is more than one.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used (and emptied: files of a previous run
    would be summed into this one's); otherwise a new temporary folder. One worker keeps
    prometheus-client's ordinary in-process registry.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not configured:
        return None
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="kefu-prometheus-", dir=base))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    logger.info("Prometheus multiprocess mode: the workers' metrics are gathered in %s.", folder)
    return str(folder)


def remove_multiprocess_dir(folder: str | None) -> None:
    """After the server stopped (the manager process): remove a folder :func:`prepare_multiprocess_dir` made."""
    if folder and Path(folder).name.startswith("kefu-prometheus-"):
        shutil.rmtree(folder, ignore_errors=True)


def forget_dead_workers(folder: str | None = None) -> list[int]:
    """Drop the per-worker gauges of workers that died without stopping (kill -9, OOM)."""
    folder = folder or os.environ.get(MULTIPROC_ENV)
    if not folder:
        return []
    from prometheus_client import multiprocess

    dead = set()
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(int(pid))
        except PermissionError:  # alive, another user's
            pass
    for pid in dead:
        multiprocess.mark_process_dead(pid, folder)
    return sorted(dead)


def route_label(request: Request) -> str:
    route = getattr(request, "route", None)
    if route is None:
        return "unmatched"
    return "/" + str(route.path).lstrip("/")


def channel_label(route: str) -> str:
    """The channel a route serves, from its pattern (bounded: one value per mounted channel)."""
    parts = route.strip("/").split("/")
    if parts[0] == "webhooks" and len(parts) > 1:
        return parts[1]
    if parts[0] == "socket.io":
        return "socketio"
    if parts[0] in ("handoff", "console"):
        return "console"
    return "api"


def status_class(status: int | None) -> str:
    return f"{int(status) // 100}xx" if status else "unknown"


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(str(address or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def fingerprint_hash(fingerprint: Any) -> str:
    if not fingerprint:
        return ""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class WorkerMonitor:
    """One worker's gauges: loop lag, model, feature health, process figures; every half second."""

    def __init__(self, app: Sanic) -> None:
        self.app = app
        self.model: tuple[str, str] | None = None
        self.lag = 0.0
        self.last_tick = time.monotonic()

    def refresh(self) -> None:
        agent = getattr(self.app.ctx, "agent", None)
        ready = bool(agent is not None and agent.is_ready())
        m.WORKER_READY.set(1 if ready else 0)
        # Channels accept any object with the agent's message contract; a model id is optional.
        model = (str(getattr(agent, "model_id", None) or ""), fingerprint_hash(getattr(agent, "fingerprint", None))) \
            if ready else None
        if model != self.model:
            if self.model is not None:
                m.MODEL_INFO.labels(*self.model).set(0)  # a hot swap: the old series reads 0
                if not multiprocess_enabled():
                    m.MODEL_INFO.remove(*self.model)
            if model is not None:
                m.MODEL_INFO.labels(*model).set(1)
            self.model = model
        features = getattr(self.app.ctx, "features", None)
        if features is not None:
            for name, health in features.health().items():
                m.FEATURE_HEALTHY.labels(name).set(1 if health.ok else 0)
        m.EVENT_LOOP_LAG.set(self.lag)
        self._process()

    @staticmethod
    def _process() -> None:
        times = os.times()
        m.WORKER_CPU.set(times.user + times.system)
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                m.WORKER_RSS.set(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            m.WORKER_OPEN_FDS.set(len(os.listdir("/proc/self/fd")))
        except (OSError, ValueError, IndexError):  # not Linux: the standard process_* metrics remain
            pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + MONITOR_INTERVAL_S
            await asyncio.sleep(MONITOR_INTERVAL_S)
            self.lag = max(0.0, loop.time() - expected)
            self.last_tick = time.monotonic()
            try:
                self.refresh()
            except Exception:  # a gauge must never take the worker down
                logger.debug("Refreshing the worker's gauges failed.", exc_info=True)


def install_metrics(app: Sanic) -> None:
    """Request timing middleware, the worker monitor task and ``GET /metrics`` on ``app``."""
    app.ctx.worker_monitor = WorkerMonitor(app)

    @app.on_request(priority=1000)
    async def start_timer(request: Request) -> None:
        request.ctx.kefu_started = time.perf_counter()

    @app.on_response(priority=1000)
    async def observe_request(request: Request, resp: HTTPResponse | None) -> None:
        started = getattr(request.ctx, "kefu_started", None)
        if started is None:
            return
        route = route_label(request)
        status = getattr(resp, "status", None) if resp is not None else None
        method = request.method if request.method in HTTP_METHODS else "other"  # a client picks it: bound it
        m.HTTP_REQUEST_SECONDS.labels(route, method, channel_label(route), status_class(status)).observe(
            time.perf_counter() - started)

    @app.after_server_start
    async def start_monitor(app: Sanic) -> None:
        forget_dead_workers()
        m.WORKER_UP.set(1)
        monitor: WorkerMonitor = app.ctx.worker_monitor
        monitor.refresh()
        app.ctx.worker_monitor_task = asyncio.get_running_loop().create_task(monitor.run(), name="kefu-metrics")

    @app.before_server_stop
    async def stop_monitor(app: Sanic) -> None:
        task = getattr(app.ctx, "worker_monitor_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        m.WORKER_UP.set(0)

    @app.after_server_stop
    async def forget_this_worker(app: Sanic) -> None:
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # its per-worker gauges leave the scrape

    app.blueprint(create_metrics_blueprint())


def _registry() -> CollectorRegistry:
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


async def _timed(source: str, coro: Any, up: GaugeMetricFamily) -> Any:
    try:
        value = await asyncio.wait_for(coro, SOURCE_TIMEOUT_S)
    except Exception as e:  # a store that is down: reported, not raised (no detail: it may hold a URL)
        logger.warning("Metrics: reading %s failed (%s).", source, type(e).__name__)
        up.add_metric([source], 0)
        return None
    up.add_metric([source], 1)
    return value


async def shared_state_families(features: Any, now: float | None = None) -> list[GaugeMetricFamily]:
    """The queue depths every worker shares, read once for this scrape."""
    now = time.time() if now is None else now
    up = GaugeMetricFamily("kefu_metrics_source_up", "1 when the last scrape could read this store.",
                           labels=["source"])
    families: list[GaugeMetricFamily] = [up]
    handoff = _feature(features, "handoff")
    service = getattr(handoff, "service", None)
    if service is not None:
        rows = await _timed("handoff_queue", service.store.list(("queued",), limit=10_000), up)
        if rows is not None:
            depth = GaugeMetricFamily("kefu_handoff_queue_depth", "Handoffs waiting for an agent, by queue.",
                                      labels=["queue"])
            oldest = GaugeMetricFamily("kefu_handoff_oldest_wait_seconds",
                                       "How long the longest-waiting handoff has waited, by queue.", labels=["queue"])
            by_queue: dict[str, list[float]] = {}
            for row in rows:
                by_queue.setdefault(str(row.get("queue") or "default"), []).append(float(row["created_at"]))
            for queue in sorted(by_queue):
                depth.add_metric([queue], len(by_queue[queue]))
                oldest.add_metric([queue], max(0.0, now - min(by_queue[queue])))
            waiting = GaugeMetricFamily("kefu_handoff_waiting", "Handoffs waiting for an agent, all queues.")
            waiting.add_metric([], len(rows))
            families.append(waiting)
            families += [depth, oldest]
    triggers = _feature(features, "triggers")
    engine = getattr(triggers, "engine", None)
    if engine is not None and getattr(engine, "queue", None) is not None:
        size = await _timed("trigger_queue", engine.queue.size(), up)
        if size is not None:
            jobs = GaugeMetricFamily("kefu_trigger_jobs", "Trigger scheduler jobs: due (waiting) and in_flight "
                                     "(claimed by a worker).", labels=["state"])
            for state in ("due", "in_flight"):
                jobs.add_metric([state], int(size.get(state, 0)))
            families.append(jobs)
        next_due = await _timed("trigger_queue_next", engine.queue.next_due(), up)
        lag = GaugeMetricFamily("kefu_trigger_scheduler_lag_seconds",
                                "How overdue the earliest scheduled job is (0 when none is overdue).")
        lag.add_metric([], max(0.0, now - next_due) if next_due else 0.0)
        families.append(lag)
    outbox = _feature(features, "shop_outbox")
    relay = getattr(outbox, "relay", None)
    if relay is not None:
        rows = await _timed("shop_outbox", relay.port.pending(OUTBOX_PENDING_CAP), up)
        if rows is not None:
            pending = GaugeMetricFamily("kefu_shop_outbox_pending",
                                        f"Shop state changes not yet relayed (counted up to {OUTBOX_PENDING_CAP}).")
            pending.add_metric([], len(rows))
            families.append(pending)
    return families


def _feature(features: Any, name: str) -> Any:
    if features is None or name not in features:
        return None
    return features[name]


class _Families:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def _refused_remote() -> ErrorResponse:
    return ErrorResponse(
        HTTPStatus.UNAUTHORIZED, "NotAuthenticated",
        "This server has no credentials configured, so /metrics answers loopback clients only. Fix: start it "
        "with --auth-token or --jwt-secret and scrape with a 'monitor' token (`python -m bot token create "
        "--role monitor --subject prometheus`); see docs/operations.md.",
        help_url=DOCS_URL)


def create_metrics_blueprint() -> Blueprint:
    bp = Blueprint("kefu_metrics")

    @bp.get("/metrics")
    @requires_scope(Scope.METRICS_READ)
    async def metrics(request: Request) -> HTTPResponse:
        principal = principal_of(request)
        if principal is not None and principal.via == "open" and not _is_loopback(request.ip):
            raise _refused_remote()
        body = await run_blocking(generate_latest, _registry())
        scrape = CollectorRegistry()
        scrape.register(_Families(await shared_state_families(getattr(request.app.ctx, "features", None))))
        body += generate_latest(scrape)
        return response.raw(body, content_type=CONTENT_TYPE_LATEST)

    return bp
