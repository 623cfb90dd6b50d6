"""The process's Prometheus metrics that the engine's layers record (NLU, policies, actions).

Defined once here, below nlu and dialogue, so the processor records a turn's parts with
one line each and the server (``bot/server/metrics.py``) only exposes them. Label sets
are bounded: an action's label is its name when it looks like one (at most
:data:`MAX_ACTION_LABELS` names per process), otherwise ``other`` — end-to-end bot texts
never become label values. Several Sanic workers share the figures through
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
``python -m bot run`` before the workers start; docs/operations.md).
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Awaitable, TypeVar

from prometheus_client import Gauge, Histogram

from bot.shared.exceptions import ActionExecutionRejection

T = TypeVar("T")

# prometheus-client opens its per-process files when the metrics below are made (at import): a
# folder named in the environment but not there yet (the image's /tmp/kefu-metrics on a fresh
# container or a Kubernetes emptyDir) would stop every process at start. It is made here.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# Seconds: a turn's parts run from a millisecond (rules) to seconds (a slow action server).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_ACTION_LABELS = 300  # a domain rarely has more; beyond it every new name is "other"
OTHER = "other"
_ACTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,79}$")

HTTP_REQUEST_SECONDS = Histogram(
    "kefu_http_request_duration_seconds",
    "HTTP request latency by route pattern (never the raw path), method, channel and status class.",
    ("route", "method", "channel", "status"),
    buckets=LATENCY_BUCKETS,
)
NLU_PARSE_SECONDS = Histogram(
    "kefu_nlu_parse_duration_seconds",
    "Time to parse one shopper message (batching wait included), as a turn sees it.",
    buckets=LATENCY_BUCKETS,
)
POLICY_PREDICTION_SECONDS = Histogram(
    "kefu_policy_prediction_duration_seconds",
    "Time of one next-action prediction by the policy ensemble.",
    buckets=LATENCY_BUCKETS,
)
ACTION_SECONDS = Histogram(
    "kefu_action_duration_seconds",
    "Time to run one action, by action name (bounded) and outcome (ok, rejected, error).",
    ("action", "outcome"),
    buckets=LATENCY_BUCKETS,
)
# Per worker: ``liveall`` keeps one series per live worker process (label ``pid``) in multiprocess mode.
WORKER_UP = Gauge("kefu_worker_up", "1 while this worker serves.", multiprocess_mode="liveall")
WORKER_READY = Gauge("kefu_worker_model_ready", "1 when this worker has a model loaded and can answer.",
                     multiprocess_mode="liveall")
EVENT_LOOP_LAG = Gauge("kefu_event_loop_lag_seconds",
                       "How late the worker's event loop ran a 0.5 s timer (a blocked loop shows here).",
                       multiprocess_mode="liveall")
FEATURE_HEALTHY = Gauge("kefu_feature_healthy", "1 when the feature reports itself healthy (Feature.health()).",
                        ("feature",), multiprocess_mode="liveall")
MODEL_INFO = Gauge("kefu_model_info", "1 for the model this worker serves (model id and fingerprint hash).",
                   ("model_id", "fingerprint"), multiprocess_mode="liveall")
WORKER_RSS = Gauge("kefu_worker_resident_memory_bytes", "Resident memory of this worker process.",
                   multiprocess_mode="liveall")
WORKER_CPU = Gauge("kefu_worker_cpu_seconds", "CPU seconds (user + system) this worker process used.",
                   multiprocess_mode="liveall")
WORKER_OPEN_FDS = Gauge("kefu_worker_open_fds", "Open file descriptors of this worker process.",
                        multiprocess_mode="liveall")

_action_labels: set[str] = set()
_labels_lock = threading.Lock()


def action_label(name: str) -> str:
    """``name`` when it looks like an action name and the per-process cap is not reached, else ``other``."""
    if name in _action_labels:
        return name
    if not _ACTION_NAME.match(name or ""):
        return OTHER
    with _labels_lock:
        if len(_action_labels) >= MAX_ACTION_LABELS:
            return OTHER
        _action_labels.add(name)
    return name


async def observe(histogram: Histogram, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` and record how long it took (also when it raises)."""
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        histogram.observe(time.perf_counter() - started)


async def observe_action(name: str, awaitable: Awaitable[T]) -> T:
    """Await an action's run and record its time under its bounded name and outcome."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await awaitable
        outcome = "ok"
        return result
    except ActionExecutionRejection:
        outcome = "rejected"
        raise
    finally:
        ACTION_SECONDS.labels(action_label(name), outcome).observe(time.perf_counter() - started)
