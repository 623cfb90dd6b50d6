"""The agent: a loaded model plus the stores, behind one small async API.

The HTTP server and the CLI talk only to this class. ``load_model`` swaps the
model atomically: requests in flight finish on the old processor, new ones use
the new one; trackers live in the stores, so no conversation is dropped.
"""
from __future__ import annotations

import asyncio
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.dialogue.hooks import ProcessorHook
from bot.dialogue.processor import MessageProcessor
from bot.model.loader import LoadedModel
from bot.shared.concurrency import run_blocking
from bot.shared.exceptions import InvalidRequest, ModelNotFound
from bot.shared.jobs import HeavyJobs
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage

logger = logging.getLogger(__name__)

# ActionExecuted metadata key holding a proactive send's idempotency key (send_proactive).
PROACTIVE_KEY_METADATA = "proactive_send_id"


class Agent:
    def __init__(
        self,
        tracker_store: Any = None,
        lock_store: Any = None,
        event_broker: Any = None,
        endpoints: Any = None,
        action_package: str | None = "actions",
        project_root: str | Path = ".",
        max_number_of_predictions: int = 10,
        inference_threads: int = 2,
        max_message_chars: int | None = None,
    ) -> None:
        from bot.stores.lock_store import InMemoryLockStore
        from bot.stores.tracker_store import InMemoryTrackerStore

        _limit_torch_threads()
        self.endpoints = endpoints
        self.event_broker = event_broker
        self.tracker_store = tracker_store or InMemoryTrackerStore(None, event_broker=event_broker)
        self.lock_store = lock_store or InMemoryLockStore()
        self.action_package = action_package
        self.project_root = Path(project_root)
        self.max_number_of_predictions = max_number_of_predictions
        # None: config.yml `kefu: {max_message_chars: N}` of the project, else the default.
        self.max_message_chars = (
            max_message_chars if max_message_chars is not None else message_cap_from_config(self.project_root)
        )
        # Shoppers' parses, predictions and searches; heavy maintenance (training, model
        # loads, knowledge rebuilds) runs one job at a time on its own thread instead.
        self._executor = ThreadPoolExecutor(max_workers=inference_threads, thread_name_prefix="kefu-infer")
        self.heavy_jobs = HeavyJobs()
        self._model: LoadedModel | None = None
        self.processor: MessageProcessor | None = None
        self._action_executor: Any = None
        self._swap_lock = asyncio.Lock()
        self.hooks: list[ProcessorHook] = []
        self.training_jobs = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    async def create(
        cls,
        model_path: str | Path | None = None,
        endpoints_path: str | Path | None = None,
        project_root: str | Path = ".",
        **kwargs: Any,
    ) -> "Agent":
        """Build stores from endpoints.yml (embedded defaults otherwise) and load a model."""
        from bot.shared.endpoints import load_endpoints
        from bot.stores.event_broker import create_event_broker
        from bot.stores.lock_store import create_lock_store
        from bot.stores.tracker_store import create_tracker_store

        endpoints = load_endpoints(endpoints_path)
        broker = await _maybe_await(create_event_broker(endpoints.event_broker))
        tracker_store = await _maybe_await(create_tracker_store(endpoints.tracker_store, None, event_broker=broker))
        lock_store = await _maybe_await(create_lock_store(endpoints.lock_store))
        agent = cls(tracker_store, lock_store, broker, endpoints, project_root=project_root, **kwargs)
        if model_path is not None:
            await agent.load_model(model_path)
        return agent

    # ------------------------------------------------------------------ model
    @property
    def domain(self) -> Any:
        return self._model.domain if self._model else None

    @property
    def model_id(self) -> str | None:
        return self._model.model_id if self._model else None

    @property
    def model_path(self) -> str | None:
        return str(self._model.path) if self._model else None

    @property
    def fingerprint(self) -> dict:
        return dict(self._model.metadata.fingerprint) if self._model else {}

    @property
    def knowledge(self) -> Any:
        """The worker's FAQ knowledge base holder (None without knowledge files)."""
        return self._model.knowledge if self._model else None

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def is_ready(self) -> bool:
        return self._model is not None and self.processor is not None

    def _make_action_executor(self) -> Any:
        if self.endpoints is not None and getattr(self.endpoints, "action_endpoint", None):
            return None
        if not self.action_package:
            return None
        from bot.dialogue.actions.inprocess import create_executor

        root = self.project_root.resolve()
        pkg_dir = root / self.action_package.replace(".", "/")
        if not (pkg_dir.is_dir() or pkg_dir.with_suffix(".py").is_file()):
            logger.info("No '%s' package in %s: custom actions need an action server.", self.action_package, root)
            return None
        return create_executor(self.action_package, project_root=root)

    async def load_model(self, model_path: str | Path) -> None:
        """Load an archive (or the newest in a folder) and swap it in atomically."""
        from bot.model.archive import resolve_model_path

        path = resolve_model_path(model_path)
        new_model = await self.heavy_jobs.run("model load", LoadedModel.load, path, self.project_root)
        if new_model.knowledge is not None:
            new_model.knowledge.executor = self._executor
            new_model.knowledge.jobs = self.heavy_jobs
        async with self._swap_lock:
            if self._action_executor is None:
                self._action_executor = await run_blocking(self._make_action_executor)
            if hasattr(self.tracker_store, "domain"):
                self.tracker_store.domain = new_model.domain
            processor = MessageProcessor(
                domain=new_model.domain,
                tracker_store=self.tracker_store,
                lock_store=self.lock_store,
                nlu=new_model.nlu,
                ensemble=new_model.ensemble,
                action_endpoint=getattr(self.endpoints, "action_endpoint", None) if self.endpoints else None,
                action_executor=self._action_executor,
                max_number_of_predictions=self.max_number_of_predictions,
                model_id=new_model.model_id,
                executor=self._executor,
                knowledge=new_model.knowledge,
                hooks=self.hooks,
                max_message_chars=self.max_message_chars,
            )
            # The new model answers its first shopper warm (NLU, policies), also on a hot swap.
            timings = await processor.warm_up()
            logger.info("Model %s warmed up: %s", new_model.model_id,
                        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
            old = self._model
            self._model, self.processor = new_model, processor
        if old is not None and old is not new_model:
            if old.knowledge is not None and hasattr(old.knowledge, "stop_watching"):
                old.knowledge.stop_watching()
            old.close()
        kb = new_model.knowledge
        if kb is not None and getattr(getattr(kb, "config", None), "watch", False):
            kb.start_watching()
        logger.info("Model %s is live.", new_model.model_id)

    async def warm_up(self) -> dict[str, float]:
        """Open what the first turn would otherwise open (the worker's start; safe to call twice).

        The stores' connections (a read of a conversation that does not exist and a lock
        taken and released on it: nothing is written), the action server's pooled
        connection, and the loop-side code of a turn. The model itself was warmed when it
        was loaded (``MessageProcessor.warm_up``). Returns seconds per step.
        """
        from bot.dialogue.processor import WARM_UP_SENDER_ID

        timings: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self.tracker_store.retrieve(WARM_UP_SENDER_ID)
            async with self.lock_store.lock(WARM_UP_SENDER_ID):
                pass
        except Exception:  # noqa: BLE001 - a store that is down reports itself on the first turn
            logger.warning("Warm-up: the tracker or lock store is not reachable yet.", exc_info=True)
        timings["stores"] = round(loop.time() - started, 4)
        endpoint = getattr(self.endpoints, "action_endpoint", None) if self.endpoints else None
        if endpoint is not None and getattr(endpoint, "url", None):
            from bot.dialogue.actions.remote import warm_up_action_server

            started = loop.time()
            await warm_up_action_server(endpoint)
            timings["action_server"] = round(loop.time() - started, 4)
        logger.info("Worker warmed up: %s", ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
        return timings

    def add_hook(self, hook: ProcessorHook) -> None:
        """Register a processor hook (``bot/dialogue/hooks.py``); kept across model swaps."""
        if not isinstance(hook, ProcessorHook):
            missing = [m for m in ("after_user_message", "after_turn") if not callable(getattr(hook, m, None))]
            raise TypeError(f"{type(hook).__name__} is not a processor hook: it lacks {', '.join(missing)}. "
                            "Fix: implement both methods of bot.dialogue.hooks.ProcessorHook.")
        self.hooks.append(hook)
        if self.processor is not None and hook not in self.processor.hooks:
            self.processor.hooks.append(hook)

    def remove_hook(self, hook: ProcessorHook) -> None:
        """Unregister a hook (a feature that stops); unknown hooks are ignored."""
        for hooks in (self.hooks, self.processor.hooks if self.processor is not None else []):
            if hook in hooks:
                hooks.remove(hook)

    def _require(self) -> MessageProcessor:
        if self.processor is None:
            raise ModelNotFound("No model is loaded. Fix: train one and load it with PUT /model or --model.")
        return self.processor

    # ------------------------------------------------------------------ messages
    async def handle_message(self, message: UserMessage) -> list[dict] | None:
        return await self._require().handle_message(message)

    async def handle_text(self, text: str, sender_id: str = "default", output_channel: OutputChannel | None = None,
                          metadata: dict | None = None) -> list[dict] | None:
        channel = output_channel or CollectingOutputChannel()
        return await self.handle_message(UserMessage(text, channel, sender_id, metadata=metadata))

    async def log_message(self, message: UserMessage) -> Any:
        """Record a user message (session start, parse, slot extraction) without predicting."""
        processor = self._require()
        async with self.lock_store.lock(message.sender_id):
            return await processor.log_message(message, should_save_tracker=True)

    async def parse_message(self, text: str) -> dict:
        if not isinstance(text, str):
            raise InvalidRequest("'text' must be a string.")
        return await self._require().parse_text(text)

    async def get_tracker(self, sender_id: str) -> Any:
        """The whole conversation (all sessions), for the HTTP API; created if missing."""
        processor = self._require()
        full = getattr(self.tracker_store, "retrieve_full_tracker", None)
        if full is not None:
            tracker = await full(sender_id)
            if tracker is not None:
                return tracker
        return await processor.get_tracker(sender_id)

    async def save_tracker(self, tracker: Any) -> None:
        await self.tracker_store.save(tracker)

    async def append_events(self, sender_id: str, events: list[Any]) -> Any:
        processor = self._require()
        async with self.lock_store.lock(sender_id):
            tracker = await processor.get_tracker(sender_id)
            tracker.update_with_events(events, processor.domain)
            await processor.save_tracker(tracker)
            return tracker

    async def replace_events(self, sender_id: str, events: list[Any]) -> Any:
        from bot.shared.tracker import DialogueStateTracker

        processor = self._require()
        async with self.lock_store.lock(sender_id):
            tracker = DialogueStateTracker.from_events(sender_id, events, processor.domain.slots)
            if hasattr(self.tracker_store, "delete"):
                await self.tracker_store.delete(sender_id)
            await processor.save_tracker(tracker)
            return tracker

    async def trigger_intent(self, sender_id: str, intent: str, entities: Any, output_channel: OutputChannel) -> Any:
        processor = self._require()
        if intent not in processor.domain.intents:
            raise InvalidRequest(
                f"The intent '{intent}' does not exist in the domain. Fix: use one of: "
                + ", ".join(processor.domain.intents)
            )
        async with self.lock_store.lock(sender_id):
            tracker = await processor.fetch_tracker_and_update_session(sender_id, output_channel)
            await processor.trigger_external_user_uttered(intent, entities, tracker, output_channel)
            return tracker

    async def execute_action(self, sender_id: str, action_name: str, output_channel: OutputChannel,
                             policy: str | None = None, confidence: float | None = None) -> Any:
        return await self._require().execute_action(sender_id, action_name, output_channel, policy, confidence)

    async def send_proactive(
        self,
        sender_id: str,
        action_or_response_name: str,
        output_channel: OutputChannel | None = None,
        *,
        slots: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        policy: str = "proactive",
    ) -> list[dict]:
        """Send a response or run an action in a conversation without a user message.

        For lifecycle messages (bot/triggers) and other server-initiated sends. Under the
        conversation lock: fetch the tracker (a new session starts if needed), set
        ``slots``, run exactly this action (unlike ``execute_action``, nothing is
        predicted after it, which after a proactive message would end in the fallback),
        close the turn with ``action_listen`` and save. ``metadata`` reaches the action
        (custom actions get it like Rasa's message metadata) and is stored on its
        ``ActionExecuted``. With ``idempotency_key``, a conversation that already ran a
        proactive send with that key returns ``[]`` without running anything, so a retried
        send (e.g. after a scheduler crash) is harmless. Returns the bot messages sent to
        ``output_channel`` (a collecting channel when None).
        """
        from bot.dialogue.processor import Prediction
        from bot.shared.constants import ACTION_LISTEN_NAME
        from bot.shared.events import ActionExecuted, BotUttered, SlotSet

        processor = self._require()
        channel = output_channel or CollectingOutputChannel()
        action = processor.action_for(action_or_response_name)  # ActionNotFound (with a fix) if not in the domain
        action_metadata = dict(metadata or {})
        if idempotency_key is not None:
            action_metadata[PROACTIVE_KEY_METADATA] = idempotency_key
        async with self.lock_store.lock(sender_id):
            tracker = await processor.fetch_tracker_and_update_session(sender_id, channel)
            if idempotency_key is not None and any(
                isinstance(e, ActionExecuted) and (e.metadata or {}).get(PROACTIVE_KEY_METADATA) == idempotency_key
                for e in tracker.events
            ):
                logger.debug("Proactive send %s already in conversation %s; not repeated.", idempotency_key, sender_id)
                return []
            before = len(tracker.events)
            for slot, value in (slots or {}).items():
                tracker.update(SlotSet(slot, value), processor.domain)
            prediction = Prediction(action_or_response_name, policy, 1.0, action_metadata=action_metadata or None)
            await processor.run_action(action, tracker, channel, prediction, metadata=metadata or {})
            tracker.update(ActionExecuted(ACTION_LISTEN_NAME), processor.domain)
            await processor.save_tracker(tracker)
            new_events = list(tracker.events)[before:]
        messages = []
        for event in new_events:
            if isinstance(event, BotUttered):
                message = {"recipient_id": sender_id, "text": event.text}
                message.update({k: v for k, v in (event.data or {}).items() if v is not None})
                messages.append(message)
        return messages

    async def predict_next(self, sender_id: str) -> dict:
        return await self._require().predict_next(sender_id)

    # ------------------------------------------------------------------ training
    async def train(self, payload: Any, project_root: str | Path | None = None, **kwargs: Any) -> str:
        """Train from a project folder (default) or a Rasa-style YAML/JSON payload.

        Reading the payload (YAML within ``HTTP_YAML_LIMITS``), writing it out and
        training are one heavy job: it waits for the jobs before it and never runs
        on the event loop or on the shoppers' pool (``HeavyJobsBusy`` when the queue is full).
        """
        from bot.model.training import train as train_model

        root = Path(project_root or self.project_root)
        force = bool(kwargs.get("force", kwargs.get("force_training", False)))
        out = kwargs.get("out", root / "models")

        def job() -> str:
            source = root
            if payload:
                source = Path(tempfile.mkdtemp(prefix="kefu-train-req-"))
                _write_training_payload(payload, source)
            return str(train_model(source, out=out, force=force).model_path)

        self.training_jobs += 1
        try:
            return await self.heavy_jobs.run("training", job)
        finally:
            self.training_jobs -= 1

    async def close(self) -> None:
        from bot.dialogue.actions.remote import close_action_clients

        await close_action_clients()
        for closer in (getattr(self.tracker_store, "close", None), getattr(self.lock_store, "close", None),
                       getattr(self.event_broker, "close", None)):
            if closer is not None:
                await _maybe_await(closer())
        if self._model is not None:
            if self._model.knowledge is not None and hasattr(self._model.knowledge, "stop_watching"):
                self._model.knowledge.stop_watching()
            self._model.close()
        self._executor.shutdown(wait=False)
        self.heavy_jobs.shutdown()


def message_cap_from_config(project_root: str | Path) -> int:
    """``kefu.max_message_chars`` of the project's config.yml (a runtime setting, not trained)."""
    from bot.dialogue.processor import DEFAULT_MAX_MESSAGE_CHARS
    from bot.shared.exceptions import ConfigError
    from bot.shared.yaml_io import line_of, read_yaml_file

    path = Path(project_root) / "config.yml"
    if not path.is_file():
        return DEFAULT_MAX_MESSAGE_CHARS
    raw = read_yaml_file(path)
    section = raw.get("kefu") if isinstance(raw, dict) else None
    if section is None:
        return DEFAULT_MAX_MESSAGE_CHARS
    value = section.get("max_message_chars", DEFAULT_MAX_MESSAGE_CHARS) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"kefu.max_message_chars must be a positive whole number of characters, got {value!r}.",
            path,
            line_of(section, key="max_message_chars") if isinstance(section, dict) else line_of(raw, key="kefu"),
            fix=f"Write e.g. `kefu: {{max_message_chars: {DEFAULT_MAX_MESSAGE_CHARS}}}`.",
        )
    return value


def _limit_torch_threads() -> None:
    """Small models: one intra-op thread each; concurrency comes from the inference pool."""
    try:
        from bot.nlu.torch_runtime import inference_threads
    except ImportError:  # pragma: no cover
        return
    inference_threads()


async def create_agent_for_server(
    model_path: str | None, endpoints_path: str | None, project_root: str = "."
) -> Agent:
    """Module-level (picklable) factory each server worker calls on start."""
    return await Agent.create(model_path, endpoints_path, project_root=project_root)


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def _write_training_payload(payload: Any, target: Path) -> None:
    """Write a POST /model/train payload as a project folder.

    Accepts Rasa's YAML body (one document with config keys, domain keys, nlu,
    stories and rules) or JSON with ``config``, ``domain``, ``nlu``, ``stories``,
    ``rules`` given as YAML strings or mappings.
    """
    from bot.shared.yaml_io import HTTP_YAML_LIMITS, dump_yaml, read_yaml, to_plain

    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", errors="replace")
    if isinstance(payload, str):
        data = to_plain(read_yaml(payload, "<request body>", HTTP_YAML_LIMITS)) or {}
    elif isinstance(payload, dict):
        data = {}
        for key, value in payload.items():
            if isinstance(value, str) and key in ("config", "domain", "nlu", "stories", "rules", "responses"):
                parsed = to_plain(read_yaml(value, f"<request body: {key}>", HTTP_YAML_LIMITS))
                if key in ("config", "domain") and isinstance(parsed, dict):
                    data.update(parsed)
                else:
                    data[key] = parsed.get(key, parsed) if isinstance(parsed, dict) else parsed
            else:
                data[key] = value
    else:
        raise InvalidRequest("Training payload must be YAML text or a JSON object.")
    if not isinstance(data, dict):
        raise InvalidRequest("Training payload must be a mapping.")
    config_keys = {"language", "pipeline", "policies", "assistant_id", "recipe"}
    data_keys = {"nlu", "stories", "rules"}
    config = {k: v for k, v in data.items() if k in config_keys}
    domain = {k: v for k, v in data.items() if k not in config_keys | data_keys | {"force", "save_to_default_model_directory"}}
    training = {k: v for k, v in data.items() if k in data_keys}
    (target / "data").mkdir(parents=True, exist_ok=True)
    (target / "config.yml").write_text(dump_yaml(config), encoding="utf-8")
    domain.setdefault("version", "3.1")
    (target / "domain.yml").write_text(dump_yaml(domain), encoding="utf-8")
    training["version"] = "3.1"
    (target / "data" / "training.yml").write_text(dump_yaml(training), encoding="utf-8")
