"""Tiny hand-built domain and tracker builders for the policy tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from bot.shared.domain import Domain
from bot.shared.tracker import DialogueStateTracker

DATA = Path(__file__).resolve().parents[2] / "data" / "policies"


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(DATA / "domain.yml")


@pytest.fixture
def make_tracker(domain: Domain) -> Callable[..., DialogueStateTracker]:
    def build(name: str, events: list[Any], rule: bool = False) -> DialogueStateTracker:
        return DialogueStateTracker.from_events(
            name, events, slots=domain.slots, domain=domain, is_rule_tracker=rule
        )

    return build
