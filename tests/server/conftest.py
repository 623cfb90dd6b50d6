"""A fake Agent with the real agent's async contract, for the HTTP tests."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.shared.events import ActionExecuted, BotUttered, Event, UserUttered
from bot.shared.exceptions import ModelNotFound
from bot.shared.message import OutputChannel, UserMessage
from bot.shared.tracker import DialogueStateTracker, EventVerbosity


class FakeDomain:
    intents = ["greet", "goodbye", "order_status"]

    def as_dict(self) -> dict[str, Any]:
        return {"version": "3.1", "intents": list(self.intents), "responses": {"utter_greet": [{"text": "Hi"}]}}


def parse_result(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "intent": {"name": "greet", "confidence": 0.9},
        "entities": [],
        "intent_ranking": [{"name": "greet", "confidence": 0.9}],
        "sentiment": {"label": "neutral", "score": 0.0},
        "language": "en",
    }


class FakeAgent:
    """Implements the Agent contract in memory; ``boom`` texts raise."""

    def __init__(self, ready: bool = True, models_dir: Path | None = None) -> None:
        self.ready = ready
        self.domain: FakeDomain | None = FakeDomain() if ready else None
        self.model_id: str | None = "model-1" if ready else None
        self.model_path: str | None = "/srv/models/20260101-000000.tar.gz" if ready else None
        self.fingerprint: dict = {"config": "c0ffee", "domain": "d0"} if ready else {}
        self.trackers: dict[str, DialogueStateTracker] = {}
        self.models_dir = models_dir
        self.handled: list[UserMessage] = []
        self.train_calls: list[tuple[Any, dict]] = []
        self.train_gate: asyncio.Event | None = None

    def is_ready(self) -> bool:
        return self.ready

    async def handle_message(self, message: UserMessage) -> list[dict] | None:
        self.handled.append(message)
        if message.text == "boom":
            raise RuntimeError("secret internal detail /etc/passwd")
        if message.text == "slow":
            await asyncio.sleep(0.2)
        tracker = await self.get_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, parse_data=parse_result(message.text or "")))
        await message.output_channel.send_response(
            message.sender_id, {"text": f"echo: {message.text}"}
        )
        await message.output_channel.send_response(
            message.sender_id,
            {"text": "pick", "buttons": [{"title": "A", "payload": "/greet"}]},
        )
        return None

    async def parse_message(self, text: str) -> dict:
        return parse_result(text)

    async def get_tracker(self, sender_id: str) -> DialogueStateTracker:
        if sender_id not in self.trackers:
            self.trackers[sender_id] = DialogueStateTracker(sender_id)
        return self.trackers[sender_id]

    async def save_tracker(self, tracker: DialogueStateTracker) -> None:
        self.trackers[tracker.sender_id] = tracker

    async def append_events(self, sender_id: str, events: list[Event]) -> DialogueStateTracker:
        tracker = await self.get_tracker(sender_id)
        for event in events:
            tracker.update(event)
        return tracker

    async def replace_events(self, sender_id: str, events: list[Event]) -> DialogueStateTracker:
        tracker = DialogueStateTracker.from_events(sender_id, events)
        self.trackers[sender_id] = tracker
        return tracker

    async def trigger_intent(
        self, sender_id: str, intent: str, entities: dict, output_channel: OutputChannel
    ) -> DialogueStateTracker:
        tracker = await self.get_tracker(sender_id)
        tracker.update(
            UserUttered(
                f"/{intent}",
                intent={"name": intent, "confidence": 1.0},
                entities=[{"entity": k, "value": v} for k, v in entities.items()],
            )
        )
        await output_channel.send_response(sender_id, {"text": f"triggered {intent}"})
        return tracker

    async def execute_action(
        self,
        sender_id: str,
        action_name: str,
        output_channel: OutputChannel,
        policy: str | None = None,
        confidence: float | None = None,
    ) -> DialogueStateTracker:
        tracker = await self.get_tracker(sender_id)
        tracker.update(ActionExecuted(action_name, policy, confidence))
        tracker.update(BotUttered(f"ran {action_name}"))
        await output_channel.send_response(sender_id, {"text": f"ran {action_name}"})
        return tracker

    async def predict_next(self, sender_id: str) -> dict:
        tracker = await self.get_tracker(sender_id)
        return {
            "scores": [
                {"action": "utter_greet", "score": 0.1},
                {"action": "action_listen", "score": 0.7},
                {"action": "action_restart", "score": 0.7},
            ],
            "policy": "RulePolicy",
            "confidence": 0.7,
            "tracker": tracker.current_state(EventVerbosity.AFTER_RESTART),
        }

    async def load_model(self, model_path: str) -> None:
        if not Path(model_path).exists():
            raise ModelNotFound(f"No model found at '{model_path}'. Fix: train one first.")
        self.model_path = model_path
        self.model_id = "model-2"
        self.domain = FakeDomain()
        self.ready = True

    async def train(self, payload: Any, **kwargs: Any) -> str:
        self.train_calls.append((payload, kwargs))
        if self.train_gate is not None:
            await self.train_gate.wait()
        assert self.models_dir is not None
        path = self.models_dir / "20260102-120000-fake.tar.gz"
        path.write_bytes(b"fake model archive")
        return str(path)


@pytest.fixture
def agent(tmp_path: Path) -> FakeAgent:
    return FakeAgent(models_dir=tmp_path)


@pytest.fixture
def unready_agent(tmp_path: Path) -> FakeAgent:
    """An agent without a model (before the first PUT /model)."""
    return FakeAgent(ready=False, models_dir=tmp_path)
