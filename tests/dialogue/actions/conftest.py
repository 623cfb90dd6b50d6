"""Small stand-ins for the domain and NLG, built from plain dicts.

They implement only the parts of the ``Domain`` / ``TemplatedNaturalLanguageGenerator``
contract (docs/internals.md) that actions use, so the action tests don't depend on
the YAML reader.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.shared import constants as c
from bot.shared.slots import Slot

ACTION_PACKAGE_DIR = Path(__file__).resolve().parents[2] / "data" / "actions"
ACTION_PACKAGE = "kefu_test_actions"


@dataclass(frozen=True)
class FakeSessionConfig:
    session_expiration_time: float = 60
    carry_over_slots: bool = True


class FakeDomain:
    """Just enough of ``bot.shared.domain.Domain`` for actions."""

    def __init__(
        self,
        *,
        intents: list[str] = (),
        entities: list[str] = (),
        slots: dict[str, dict[str, Any]] | None = None,
        responses: dict[str, list[dict[str, Any]]] | None = None,
        actions: list[str] = (),
        forms: dict[str, dict[str, Any]] | None = None,
        carry_over_slots: bool = True,
    ) -> None:
        self.intents = sorted(set(intents) | set(c.DEFAULT_INTENTS))
        self.entities = list(entities)
        self.responses = dict(responses or {})
        self.user_actions = list(actions)
        self.forms = {
            name: {"required_slots": list(f.get("required_slots", [])), **f}
            for name, f in (forms or {}).items()
        }
        slot_defs = dict(slots or {})
        if self.forms:
            slot_defs.setdefault(c.REQUESTED_SLOT, {"type": "any"})
        slot_defs.setdefault(c.SESSION_START_METADATA_SLOT, {"type": "any"})
        self.slots = [Slot.from_dict(name, d) for name, d in slot_defs.items()]
        self.session_config = FakeSessionConfig(carry_over_slots=carry_over_slots)

    @property
    def action_names_or_texts(self) -> list[str]:
        names = list(c.DEFAULT_ACTION_NAMES)
        for name in [*self.user_actions, *self.responses, *self.forms]:
            if name not in names:
                names.append(name)
        return names

    def required_slots_for_form(self, name: str) -> list[str]:
        return list(self.forms.get(name, {}).get("required_slots", []))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": "3.1",
            "intents": self.intents,
            "entities": self.entities,
            "slots": {s.name: {"type": s.type_name or "any", "mappings": s.mappings} for s in self.slots},
            "responses": self.responses,
            "actions": self.user_actions,
            "forms": self.forms,
            "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
        }


class FakeNLG:
    """First variation, ``{slot}`` filled from kwargs then tracker slots."""

    def __init__(self, responses: dict[str, list[dict[str, Any]]]) -> None:
        self.responses = responses
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def generate(self, utter_action: str, tracker: Any, output_channel_name: str, **kwargs: Any):
        self.calls.append((utter_action, output_channel_name, kwargs))
        variations = self.responses.get(utter_action)
        if not variations:
            return None
        message = dict(variations[0])
        values = {**tracker.current_slot_values(), **kwargs}
        if message.get("text"):
            message["text"] = re.sub(
                r"\{(\w+)\}", lambda m: str(values.get(m.group(1))), message["text"]
            )
        return message


@pytest.fixture
def action_package_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """Makes ``kefu_test_actions`` importable; returns the package name."""
    monkeypatch.syspath_prepend(str(ACTION_PACKAGE_DIR))
    return ACTION_PACKAGE


def ensure_importable() -> None:
    if str(ACTION_PACKAGE_DIR) not in sys.path:
        sys.path.insert(0, str(ACTION_PACKAGE_DIR))
