"""The message processor: one user message in, bot actions out.

Mirrors Rasa's ``MessageProcessor``: fetch the tracker (starting a new session
when the old one expired), parse the message (``/intent`` bypasses NLU), log
``UserUttered``, run ``action_extract_slots``, then predict and run actions until
the bot listens. Everything for one conversation happens under its lock, so two
messages of one conversation never interleave; other conversations go on.

CPU-bound work (NLU, policy prediction) runs in a thread pool, never on the loop.
"""
from __future__ import annotations

import copy
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable

from bot.dialogue.hooks import ProcessorHook
from bot.shared.concurrency import run_blocking
from bot.shared.constants import (
    ACTION_DEFAULT_FALLBACK_NAME,
    ACTION_EXTRACT_SLOTS,
    ACTION_LISTEN_NAME,
    ACTION_SESSION_START_NAME,
    USER_INTENT_RESTART,
)
from bot.shared.events import (
    ActionExecuted,
    ActionExecutionRejected,
    BotUttered,
    Event,
    SlotSet,
    UserUttered,
)
from bot.shared.exceptions import (
    ActionExecutionError,
    ActionExecutionRejection,
    BotError,
    ConversationChannelMismatch,
)
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage
from bot.shared import metrics

from bot.nlu.language import conversation_language
from bot.nlu.regex_interpreter import is_intent_message

logger = logging.getLogger(__name__)

DEFAULT_MAX_PREDICTIONS = 10
# config.yml `kefu: {max_message_chars: N}`; the widget's transport cap
# (connectors/socketio max_message_length) should not be lower.
DEFAULT_MAX_MESSAGE_CHARS = 2000
MESSAGE_TOO_LONG_METADATA = "kefu_message_too_long"
FOLLOWUP_POLICY = "followup_action"
ACTION_FAILED_METADATA = "kefu_action_failed"
# The conversation id of the start-up warm-up's throwaway tracker (never stored).
WARM_UP_SENDER_ID = "__kefu_warm_up__"

# Said when a message is longer than the cap (the domain's `utter_message_too_long` wins).
MESSAGE_TOO_LONG_TEXT = {
    "zh": "您的消息太长了（超过 {limit} 字），请精简后分几条发送。",
    "en": "Your message is too long (over {limit} characters). Please shorten it or send it in parts.",
}
MESSAGE_TOO_LONG_RESPONSE = "utter_message_too_long"

# Said when a custom action fails and the domain has no `utter_default`.
FALLBACK_TEXT = {
    "zh": "抱歉，系统暂时出了点问题，请稍后再试，或回复“人工”联系客服。",
    "en": "Sorry, something went wrong on our side. Please try again in a moment, or type 'agent' to reach a person.",
}


@dataclass
class Prediction:
    """What the processor needs of a policy prediction (duck-typed PolicyPrediction)."""

    action_name: str
    policy_name: str | None
    confidence: float
    events: list[Event] = field(default_factory=list)
    hide_rule_turn: bool = False
    action_metadata: dict | None = None


class MessageProcessor:
    """Handles messages for one loaded model; a hot swap makes a new processor."""

    def __init__(
        self,
        domain: Any,
        tracker_store: Any,
        lock_store: Any,
        nlu: Any | None = None,
        ensemble: Any | None = None,
        nlg: Any | None = None,
        action_endpoint: Any | None = None,
        action_executor: Any | None = None,
        max_number_of_predictions: int = DEFAULT_MAX_PREDICTIONS,
        model_id: str | None = None,
        executor: Executor | None = None,
        on_circuit_break: Callable[..., Any] | None = None,
        knowledge: Any | None = None,
        hooks: list[ProcessorHook] | None = None,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    ) -> None:
        from bot.shared.nlg import TemplatedNaturalLanguageGenerator

        self.domain = domain
        self.tracker_store = tracker_store
        self.lock_store = lock_store
        self.nlu = nlu
        self.ensemble = ensemble
        self.nlg = nlg or TemplatedNaturalLanguageGenerator(domain.responses)
        self.action_endpoint = action_endpoint
        self.action_executor = action_executor
        self.max_number_of_predictions = max_number_of_predictions
        self.model_id = model_id
        self.executor = executor
        self.on_circuit_break = on_circuit_break
        self.knowledge = knowledge
        self.max_message_chars = max_message_chars
        # Extension points (handoff, triggers, metrics): see bot/dialogue/hooks.py for
        # the protocol and the rule (every hook runs; any True skips the prediction).
        self.hooks: list[ProcessorHook] = list(hooks or [])

    # ------------------------------------------------------------------ helpers
    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_blocking(fn, *args, executor=self.executor)

    def action_for(self, name: str) -> Any:
        """The action (or response) ``name`` of this model; ActionNotFound with a fix if unknown."""
        from bot.dialogue.actions import action_for_name_or_text

        return action_for_name_or_text(
            name, self.domain, self.action_endpoint, self.action_executor, knowledge=self.knowledge
        )

    # ------------------------------------------------------------------ warm-up
    async def warm_up(self) -> dict[str, float]:
        """Pay the first-use costs of this model before a shopper does (safe to call twice).

        On a throwaway tracker that is never stored: the NLU pipeline's first parse
        (tokenizer dictionaries such as jieba's, embeddings, torch's first forward pass),
        the policies' first prediction, the response renderer and the action lookup.
        No custom action runs (they may have side effects), no hook runs, nothing is
        saved or published. Returns seconds per step; a failing step is logged and skipped.
        """
        from bot.shared.tracker import DialogueStateTracker

        timings: dict[str, float] = {}
        tracker = DialogueStateTracker(WARM_UP_SENDER_ID, self.domain.slots)
        tracker.update(ActionExecuted(ACTION_SESSION_START_NAME), self.domain)
        tracker.update(ActionExecuted(ACTION_LISTEN_NAME), self.domain)

        def step(name: str, started: float) -> None:
            timings[name] = round(time.perf_counter() - started, 4)

        started = time.perf_counter()
        try:
            intent = next((i for i in self.domain.intents if not str(i).startswith("nlu_")), None)
            parse = await self._offload(self._parse_sync, "hello")
            if self.nlu is not None and hasattr(self.nlu, "prepare_batch"):
                await self._offload(self.nlu.prepare_batch, ["hello", "你好"])
            if intent:  # `/intent` messages are common in buttons
                parse = await self._offload(self._parse_sync, f"/{intent}")
            tracker.update(UserUttered("hello", parse.get("intent"), parse.get("entities", []), parse), self.domain)
        except Exception:  # noqa: BLE001 - a warm-up never stops a start
            logger.warning("Warm-up: the first parse failed; the first message will pay for it.", exc_info=True)
        step("nlu", started)
        started = time.perf_counter()
        try:
            prediction = await self._offload(self._predict_sync, tracker)
            self.action_for(prediction.action_name)
            for name in (ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME, ACTION_EXTRACT_SLOTS):
                self.action_for(name)
        except Exception:  # noqa: BLE001
            logger.warning("Warm-up: the first prediction failed; the first message will pay for it.", exc_info=True)
        step("policies", started)
        started = time.perf_counter()
        try:
            for response in list(self.domain.responses)[:1]:
                self.nlg.generate(response, tracker, "rest")
            from bot.shared.tracker import EventVerbosity

            tracker.current_state(EventVerbosity.ALL)  # what custom actions and stores serialise
        except Exception:  # noqa: BLE001
            logger.warning("Warm-up: rendering a response failed.", exc_info=True)
        step("responses", started)
        return timings

    # ------------------------------------------------------------------ trackers
    async def get_tracker(self, sender_id: str) -> Any:
        """The stored tracker, or a new one with the domain's slots."""
        from bot.shared.tracker import DialogueStateTracker

        tracker = await self.tracker_store.retrieve(sender_id)
        if tracker is None:
            tracker = DialogueStateTracker(sender_id, self.domain.slots)
        if self.model_id and hasattr(tracker, "model_id"):
            tracker.model_id = self.model_id
        return tracker

    async def save_tracker(self, tracker: Any) -> None:
        await self.tracker_store.save(tracker)

    def _has_session_expired(self, tracker: Any) -> bool:
        cfg = self.domain.session_config
        expiration = getattr(cfg, "session_expiration_time", 0) or 0
        if expiration <= 0:
            return False
        last = tracker.get_last_event_for(UserUttered)
        if last is None:
            return False
        return (time.time() - last.timestamp) > expiration * 60

    async def fetch_tracker_and_update_session(
        self, sender_id: str, output_channel: OutputChannel | None = None, metadata: dict | None = None
    ) -> Any:
        tracker = await self.get_tracker(sender_id)
        if not tracker.events or self._has_session_expired(tracker):
            logger.debug("Starting a new session for conversation %s", sender_id)
            await self.run_action(
                self.action_for(ACTION_SESSION_START_NAME),
                tracker,
                output_channel or CollectingOutputChannel(),
                Prediction(ACTION_SESSION_START_NAME, None, 1.0),
                metadata=metadata,
            )
        return tracker

    # ------------------------------------------------------------------ parsing
    def _parse_sync(self, text: str) -> dict[str, Any]:
        from bot.nlu.regex_interpreter import parse_intent_message

        parsed = parse_intent_message(text, self.domain.intents)
        if parsed is not None:
            if self.nlu is not None and hasattr(self.nlu, "enrich"):
                parsed = self.nlu.enrich(parsed)
            return parsed
        if self.nlu is None:
            return {
                "text": text,
                "intent": {"name": None, "confidence": 0.0},
                "intent_ranking": [],
                "entities": [],
            }
        return self.nlu.parse(text)

    async def parse_text(self, text: str) -> dict[str, Any]:
        """Concurrent messages are parsed together in a worker thread (bot/nlu/batching.py)."""
        from bot.nlu.batching import processor_batcher

        if self.nlu is None:
            # Only the `/intent{...}` reader runs (microseconds, and the text is capped at
            # max_message_chars): a hand-off to the pool would cost more than the parse.
            return self._parse_sync(text)
        batcher = processor_batcher(self)
        if not batcher.config.enabled:
            return await self._offload(self._parse_sync, text)
        return await batcher.parse(text)

    async def parse_message(self, message: UserMessage) -> dict[str, Any]:
        if message.parse_data:
            return message.parse_data
        parse = await metrics.observe(metrics.NLU_PARSE_SECONDS, self.parse_text(message.text or ""))
        parse.setdefault("text", message.text or "")
        parse["message_id"] = message.message_id
        if message.metadata:
            parse["metadata"] = message.metadata
        return parse

    # ------------------------------------------------------------------ main entry
    async def handle_message(self, message: UserMessage) -> list[dict] | None:
        """Process one message under the conversation lock; return collected replies."""
        if self._is_too_long(message):
            return await self._refuse_too_long(message)
        async with self.lock_store.lock(message.sender_id):
            logger.debug("Message in conversation %s on %s: %r", message.sender_id, message.input_channel, message.text)
            tracker = await self.fetch_tracker_and_update_session(
                message.sender_id, message.output_channel, message.metadata
            )
            if self._already_logged(tracker, message):
                logger.info("Message %s of conversation %s is already in it (a client's retry): not handled twice.",
                            message.message_id, message.sender_id)
                return self._collected(message.output_channel)
            tracker = await self.log_message(message, should_save_tracker=False, tracker=tracker)
            # As in Rasa 3.6: slots are extracted even while a human owns the conversation.
            await self._run_action_extract_slots(tracker, message.output_channel)
            handled = await self._run_hooks("after_user_message", tracker, message.output_channel)
            if tracker.is_paused() and not self._is_restart(tracker):
                logger.debug("Conversation %s is paused: message recorded, no bot reply.", message.sender_id)
                await self.save_tracker(tracker)
                return self._collected(message.output_channel)
            if not handled:
                await self._predict_and_execute_next_actions(tracker, message.output_channel)
            await self._run_hooks("after_turn", tracker, message.output_channel)
            await self.save_tracker(tracker)
        return self._collected(message.output_channel)

    def _is_too_long(self, message: UserMessage) -> bool:
        return (
            not message.parse_data
            and self.max_message_chars > 0
            and len(message.text or "") > self.max_message_chars
        )

    async def _refuse_too_long(self, message: UserMessage) -> list[dict] | None:
        """Answer an over-long message without parsing or storing it.

        One place for every channel: NLU cost grows with the text, and a tracker
        should not keep megabytes a shopper pasted. The conversation records only
        the fact (a ``BotUttered`` whose metadata has the length and the limit).
        """
        length = len(message.text or "")
        logger.info(
            "Message of %d characters in conversation %s exceeds the cap of %d; not parsed.",
            length, message.sender_id, self.max_message_chars,
        )
        channel = message.output_channel or CollectingOutputChannel()
        async with self.lock_store.lock(message.sender_id):
            tracker = await self.fetch_tracker_and_update_session(message.sender_id, channel, message.metadata)
            reply = self.nlg.generate(MESSAGE_TOO_LONG_RESPONSE, tracker, channel.name(), limit=self.max_message_chars) \
                if MESSAGE_TOO_LONG_RESPONSE in self.domain.responses else None
            if not reply or not reply.get("text"):
                lang = conversation_language(tracker, (message.text or "")[:200])
                reply = {"text": MESSAGE_TOO_LONG_TEXT[lang].format(limit=self.max_message_chars)}
            event = BotUttered(
                reply.get("text"),
                {k: v for k, v in reply.items() if k != "text"},
                metadata={MESSAGE_TOO_LONG_METADATA: {"length": length, "limit": self.max_message_chars}},
            )
            tracker.update(event, self.domain)
            await channel.send_response(message.sender_id, {"text": event.text, **(event.data or {})})
            await self.save_tracker(tracker)
        return self._collected(channel)

    async def _run_hooks(self, name: str, tracker: Any, output_channel: OutputChannel | None) -> bool:
        """Run every hook's ``name`` method, in order; the rule is in ``bot/dialogue/hooks.py``."""
        handled = False
        for hook in self.hooks:
            method = hook.after_user_message if name == "after_user_message" else hook.after_turn
            try:
                result = await method(self, tracker, output_channel or CollectingOutputChannel())
            except Exception:
                logger.exception("Hook %s.%s failed for %s", type(hook).__name__, name, tracker.sender_id)
                continue
            handled = handled or bool(result)
        return handled

    @staticmethod
    def _collected(channel: OutputChannel | None) -> list[dict] | None:
        if isinstance(channel, CollectingOutputChannel):
            return channel.messages
        return None

    @staticmethod
    def _is_restart(tracker: Any) -> bool:
        return tracker.latest_message is not None and tracker.latest_message.intent_name == USER_INTENT_RESTART

    async def log_message(self, message: UserMessage, should_save_tracker: bool = True, tracker: Any = None) -> Any:
        """Parse and record a user message (and run slot extraction) without predicting.

        ``tracker``: the conversation, already fetched under its lock (else it is fetched here)."""
        if tracker is None:
            tracker = await self.fetch_tracker_and_update_session(
                message.sender_id, message.output_channel, message.metadata
            )
        self._check_channel(tracker, message)
        parse_data = await self.parse_message(message)
        tracker.update(
            UserUttered(
                message.text,
                parse_data.get("intent"),
                parse_data.get("entities", []),
                parse_data,
                input_channel=message.input_channel,
                message_id=message.message_id,
                metadata=message.metadata,
            ),
            self.domain,
        )
        self._set_language_slot(tracker, parse_data)
        if should_save_tracker:
            await self.save_tracker(tracker)
        return tracker

    @staticmethod
    def _already_logged(tracker: Any, message: UserMessage) -> bool:
        """The conversation's current session already holds a user message with this message id.

        A channel passes the client's own id (the widget's ``message_id``); a client that
        re-sends a message whose first attempt failed, or whose socket dropped before the
        answer came, must get it handled once: the first attempt may have been stored (then this
        one is dropped) or not (then this one is handled). Checked under the conversation's
        lock, so a retry that races the first attempt waits for it and then sees it."""
        if not message.message_id:
            return False
        return any(isinstance(event, UserUttered) and event.message_id == message.message_id
                   for event in reversed(tracker.events))

    @staticmethod
    def _check_channel(tracker: Any, message: UserMessage) -> None:
        """A caller who merely names a sender (REST) cannot write into another channel's conversation.

        Conversation ids are the channels' own (a WeChat openid, a widget session id), so a REST
        caller who knows a shopper's openid would otherwise add to that shopper's conversation and
        read the answers (ConversationChannelMismatch, a 403). A channel that proves its sender
        (WeChat's signature, the widget's server-issued session) is never refused: a conversation
        squatted over REST under an openid does not lock its owner out.
        """
        previous = tracker.get_latest_input_channel()
        if not previous or not message.input_channel or previous == message.input_channel:
            return
        if message.sender_verified:
            logger.warning("Conversation %s moves from the %s channel to %s.", message.sender_id, previous,
                           message.input_channel)
            return
        logger.warning("Refused a %s message for conversation %s, which belongs to the %s channel.",
                       message.input_channel, message.sender_id, previous)
        raise ConversationChannelMismatch(
            f"Conversation '{message.sender_id}' belongs to the {previous} channel; a {message.input_channel} "
            "message cannot be added to it. Fix: use a conversation id of your own on this channel."
        )

    def _set_language_slot(self, tracker: Any, parse_data: dict[str, Any]) -> None:
        lang = parse_data.get("language")
        if not lang or "language" not in {s.name for s in self.domain.slots}:
            return
        current = tracker.get_slot("language")
        if current and is_intent_message(parse_data.get("text")):
            return  # a button payload (`/intent{...}`) is ASCII, not the shopper's language
        if current != lang:
            tracker.update(SlotSet("language", lang), self.domain)

    async def _run_action_extract_slots(self, tracker: Any, output_channel: OutputChannel | None) -> None:
        try:
            action = self.action_for(ACTION_EXTRACT_SLOTS)
        except BotError:
            return
        channel = output_channel or CollectingOutputChannel()
        try:
            events = await action.run(channel, self.nlg, tracker, self.domain)
        except (ActionExecutionError, ActionExecutionRejection) as e:
            logger.error("Slot extraction failed for %s: %s", tracker.sender_id, e)
            return
        await self._send_bot_messages(events, tracker, channel)
        tracker.update_with_events(list(events or []), self.domain)

    async def trigger_external_user_uttered(
        self, intent_name: str, entities: Any, tracker: Any, output_channel: OutputChannel
    ) -> None:
        """Rasa's trigger_intent: an external event injects an intent (no NLU)."""
        if isinstance(entities, dict):
            entity_list = [{"entity": k, "value": v} for k, v in entities.items()]
        else:
            entity_list = list(entities or [])
        tracker.update(
            UserUttered.create_external(intent_name, entity_list, input_channel=output_channel.name()),
            self.domain,
        )
        await self._run_action_extract_slots(tracker, output_channel)
        await self._predict_and_execute_next_actions(tracker, output_channel)
        await self.save_tracker(tracker)

    # ------------------------------------------------------------------ prediction
    def _predict_sync(self, tracker: Any) -> Prediction:
        if self.ensemble is None:
            return Prediction(ACTION_LISTEN_NAME, None, 1.0)
        prediction = self.ensemble.predict(tracker, self.domain)
        index = prediction.max_confidence_index
        name = self.domain.action_names_or_texts[index]
        return Prediction(
            name,
            prediction.policy_name,
            float(prediction.max_confidence),
            list(prediction.events or []),
            bool(getattr(prediction, "hide_rule_turn", False)),
            getattr(prediction, "action_metadata", None),
        )

    async def predict_next_action(self, tracker: Any) -> Prediction:
        followup = tracker.followup_action
        if followup:
            tracker.clear_followup_action()
            if followup in self.domain.action_names_or_texts:
                return Prediction(followup, FOLLOWUP_POLICY, 1.0)
            logger.error("Follow-up action '%s' is not in the domain; ignoring it.", followup)
        # Policies read the tracker; give them a snapshot so the loop can't race them.
        return await metrics.observe(metrics.POLICY_PREDICTION_SECONDS, self._offload(self._predict_sync, tracker))

    async def _predict_and_execute_next_actions(self, tracker: Any, output_channel: OutputChannel | None) -> None:
        channel = output_channel or CollectingOutputChannel()
        num_predicted = 0
        should_predict_another = True
        while should_predict_another and num_predicted < self.max_number_of_predictions:
            if tracker.is_paused() and not self._is_restart(tracker):
                break
            prediction = await self.predict_next_action(tracker)
            try:
                action = self.action_for(prediction.action_name)
            except BotError as e:
                logger.error("Predicted action '%s' cannot be run: %s", prediction.action_name, e)
                action = self.action_for(ACTION_LISTEN_NAME)
                prediction = Prediction(ACTION_LISTEN_NAME, prediction.policy_name, prediction.confidence)
            should_predict_another = await self.run_action(action, tracker, channel, prediction)
            num_predicted += 1
        if should_predict_another and num_predicted >= self.max_number_of_predictions:
            logger.warning(
                "Circuit breaker tripped for %s: stopped after %d actions in one turn.",
                tracker.sender_id,
                num_predicted,
            )
            if self.on_circuit_break:
                self.on_circuit_break(tracker, channel, self.nlg)
            tracker.update(ActionExecuted(ACTION_LISTEN_NAME), self.domain)

    @staticmethod
    def should_predict_another_action(action_name: str) -> bool:
        return action_name not in (ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME)

    async def _send_bot_messages(self, events: list[Event] | None, tracker: Any, channel: OutputChannel) -> None:
        for event in events or []:
            if not isinstance(event, BotUttered):
                continue
            message = {"text": event.text}
            message.update({k: v for k, v in (event.data or {}).items() if v is not None})
            try:
                await channel.send_response(tracker.sender_id, message)
            except Exception:  # a broken channel must not lose the tracker update
                logger.exception("Output channel %s failed to deliver a message to %s", channel.name(), tracker.sender_id)

    async def run_action(
        self,
        action: Any,
        tracker: Any,
        output_channel: OutputChannel,
        prediction: Prediction,
        metadata: dict | None = None,
    ) -> bool:
        """Run one action on a tracker the caller holds the lock for (also proactive sends).

        A failing action gets the fallback reply and the turn goes on. Returns whether
        to predict another action.
        """
        name = action.name()
        try:
            action_metadata = metadata if metadata is not None else prediction.action_metadata
            # The action sees the policy's events (e.g. EntitiesAdded) as Rasa does.
            action_tracker = tracker
            if prediction.events:
                action_tracker = tracker.copy()
                action_tracker.update_with_events(list(prediction.events), self.domain)
            events = None
            if name == ACTION_DEFAULT_FALLBACK_NAME and self.knowledge is not None:
                # The NLU/core fallback path asks the FAQ knowledge base before giving up.
                from bot.dialogue.actions.faq import try_answer_from_kb

                events = await try_answer_from_kb(self.knowledge, tracker, self.domain, self.nlg, output_channel)
            if events is None:
                events = await metrics.observe_action(name, action.run(
                    output_channel, self.nlg, action_tracker, self.domain, metadata=action_metadata
                ))
        except ActionExecutionRejection as e:
            logger.debug("Action %s rejected execution: %s", name, e)
            tracker.update(ActionExecutionRejected(name, prediction.policy_name, prediction.confidence), self.domain)
            return self.should_predict_another_action(name)
        except (ActionExecutionError, BotError, Exception) as e:  # never crash a worker on one action
            logger.error("Action '%s' failed for conversation %s: %s", name, tracker.sender_id, e)
            await self._handle_action_failure(name, tracker, output_channel, prediction)
            return False

        events = list(events or [])
        await self._send_bot_messages(events, tracker, output_channel)
        if not any(isinstance(e, ActionExecutionRejected) for e in events):
            tracker.update_with_events(list(prediction.events), self.domain)
            tracker.update(
                ActionExecuted(
                    name,
                    prediction.policy_name,
                    prediction.confidence,
                    hide_rule_turn=prediction.hide_rule_turn,
                    metadata=prediction.action_metadata or {},
                ),
                self.domain,
            )
        for event in events:
            event.timestamp = time.time()
            tracker.update(event, self.domain)
        return self.should_predict_another_action(name)

    async def _handle_action_failure(
        self, name: str, tracker: Any, output_channel: OutputChannel, prediction: Prediction
    ) -> None:
        """A custom action failed: record it, apologise in the shopper's language, listen."""
        tracker.update(
            ActionExecuted(
                name,
                prediction.policy_name,
                prediction.confidence,
                metadata={ACTION_FAILED_METADATA: True},
            ),
            self.domain,
        )
        response = None
        if "utter_default" in self.domain.responses:
            try:
                response = self.nlg.generate("utter_default", tracker, output_channel.name())
            except Exception:  # pragma: no cover - nlg is defensive already
                response = None
        if not response:
            response = {"text": FALLBACK_TEXT[conversation_language(tracker)]}
        text = response.get("text")
        data = {k: v for k, v in response.items() if k != "text"}
        event = BotUttered(text, data, metadata={"utter_action": "utter_default", ACTION_FAILED_METADATA: name})
        await self._send_bot_messages([event], tracker, output_channel)
        tracker.update(event, self.domain)
        tracker.update(ActionExecuted(ACTION_LISTEN_NAME, FOLLOWUP_POLICY, 1.0), self.domain)

    # ------------------------------------------------------------------ API helpers
    async def execute_action(
        self,
        sender_id: str,
        action_name: str,
        output_channel: OutputChannel,
        policy: str | None = None,
        confidence: float | None = None,
    ) -> Any:
        async with self.lock_store.lock(sender_id):
            tracker = await self.fetch_tracker_and_update_session(sender_id, output_channel)
            prediction = Prediction(action_name, policy, confidence if confidence is not None else 1.0)
            should_continue = await self.run_action(self.action_for(action_name), tracker, output_channel, prediction)
            if should_continue:
                await self._predict_and_execute_next_actions(tracker, output_channel)
            await self.save_tracker(tracker)
            return tracker

    async def predict_next(self, sender_id: str) -> dict[str, Any]:
        from bot.shared.tracker import EventVerbosity

        tracker = await self.get_tracker(sender_id)
        if self.ensemble is None:
            return {"scores": [], "policy": None, "tracker": tracker.current_state(EventVerbosity.AFTER_RESTART)}
        prediction = await self._offload(self.ensemble.predict, copy.deepcopy(tracker), self.domain)
        scores = [
            {"action": a, "score": float(p)}
            for a, p in zip(self.domain.action_names_or_texts, prediction.probabilities)
        ]
        scores.sort(key=lambda s: s["score"], reverse=True)
        return {
            "scores": scores,
            "policy": prediction.policy_name,
            "confidence": float(prediction.max_confidence),
            "tracker": tracker.current_state(EventVerbosity.AFTER_RESTART),
        }
