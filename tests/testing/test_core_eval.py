from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from bot.shared.domain import Domain
from bot.shared.training_data.stories import load_story_steps
from bot.testing.core import (
    FAILED_STORIES_FILE,
    REPORT_STORIES_FILE,
    evaluate_stories,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "stories"


@dataclass
class _Prediction:
    probabilities: list[float]
    policy_name: Optional[str]


class _ScriptedEnsemble:
    """Predicts from (latest intent, previous action) like a tiny memoization policy."""

    def __init__(self, table: dict[tuple[Optional[str], Optional[str]], str], policy: str = "MemoizationPolicy"):
        self.table = table
        self.policy = policy
        self.calls = 0

    def predict(self, tracker: Any, domain: Domain) -> _Prediction:
        self.calls += 1
        intent = tracker.latest_message.intent_name if tracker.latest_message else None
        key = (intent, tracker.latest_action_name)
        action = self.table.get(key, "action_listen")
        if tracker.active_loop_name and not tracker.is_active_loop_rejected and (None, "loop") in self.table:
            action = tracker.active_loop_name
        probs = [0.0] * len(domain.action_names_or_texts)
        probs[domain.index_for_action(action)] = 0.9
        return _Prediction(probs, self.policy)


class _Agent:
    def __init__(self, domain: Domain, ensemble: Any, nlu: Optional[dict[str, Any]] = None) -> None:
        self.domain = domain
        self.policy_ensemble = ensemble
        self._nlu = nlu
        if nlu is not None:
            self.nlu_parse = self._parse

    async def _parse(self, text: str) -> dict[str, Any]:
        return self._nlu[text]


GOOD = {
    ("greet", "action_listen"): "utter_greet",
    ("greet", "utter_greet"): "action_listen",
    ("goodbye", "action_listen"): "utter_goodbye",
    ("goodbye", "utter_goodbye"): "action_listen",
    ("inform", "action_listen"): "utter_done",
    ("inform", "utter_done"): "action_listen",
}


def _domain() -> Domain:
    return Domain.load(DATA / "domain.yml")


def test_evaluate_stories_all_correct_writes_rasa_report(tmp_path: Path) -> None:
    agent = _Agent(_domain(), _ScriptedEnsemble(GOOD))
    result = asyncio.run(evaluate_stories([DATA / "test_stories.yml"], agent, tmp_path))
    report = json.loads((tmp_path / REPORT_STORIES_FILE).read_text())
    assert report["conversation_accuracy"] == {"accuracy": 1.0, "correct": 2, "with_warnings": 0, "total": 2}
    assert report["accuracy"] == 1.0
    assert report["utter_greet"]["support"] == 2
    assert {"macro avg", "weighted avg"} <= set(report)
    assert (tmp_path / FAILED_STORIES_FILE).read_text() == "# None of the test stories failed - all good!"
    assert result.accuracy == 1.0 and result.failed_stories == []
    assert result.in_training_data_fraction == 1.0
    # action_listen after each bot turn is evaluated too (Rasa does)
    assert [a["action"] for a in result.actions].count("action_listen") == 4


def test_evaluate_stories_wrong_action_is_commented_and_replay_continues(tmp_path: Path) -> None:
    table = dict(GOOD)
    table[("goodbye", "action_listen")] = "utter_default"
    agent = _Agent(_domain(), _ScriptedEnsemble(table, policy="TEDPolicy"))
    result = asyncio.run(evaluate_stories([DATA / "test_stories.yml"], agent, tmp_path))
    assert result.conversation_accuracy["correct"] == 1
    assert result.conversation_accuracy["total"] == 2
    failed = (tmp_path / FAILED_STORIES_FILE).read_text()
    assert "- action: utter_goodbye  # predicted: utter_default" in failed
    assert "happy greet (" in failed and "test_stories.yml)" in failed
    # the story's own action was fed on, so the following action_listen is still right
    wrong = [a for a in result.actions if a["action"] != a["predicted"]]
    assert [(a["action"], a["predicted"]) for a in wrong] == [("utter_goodbye", "utter_default")]
    assert result.in_training_data_fraction == 0.0
    # the failed story file is valid test-story YAML again
    steps = load_story_steps([tmp_path / FAILED_STORIES_FILE])
    assert steps and steps[0].block_name.startswith("happy greet")


def test_evaluate_stories_uses_nlu_only_for_text_without_intent(tmp_path: Path) -> None:
    story = tmp_path / "test_nlu.yml"
    story.write_text(
        'version: "3.1"\nstories:\n- story: text only\n  steps:\n  - user: |\n      bye now\n'
        "  - action: utter_goodbye\n",
        encoding="utf-8",
    )
    nlu = {"bye now": {"intent": {"name": "goodbye", "confidence": 0.9}, "entities": [], "text": "bye now"}}
    agent = _Agent(_domain(), _ScriptedEnsemble(GOOD), nlu=nlu)
    result = asyncio.run(evaluate_stories([story], agent, tmp_path / "out"))
    assert result.conversation_accuracy["correct"] == 1
    assert json.loads((tmp_path / "out" / REPORT_STORIES_FILE).read_text())["accuracy"] == 1.0


def test_evaluate_stories_emulates_form_rejection(tmp_path: Path) -> None:
    story = tmp_path / "test_form.yml"
    story.write_text(
        'version: "3.1"\nstories:\n- story: form interrupted\n  steps:\n'
        "  - intent: request_order\n  - action: order_form\n  - active_loop: order_form\n"
        "  - intent: goodbye\n  - action: utter_goodbye\n",
        encoding="utf-8",
    )
    table = dict(GOOD)
    table[("request_order", "action_listen")] = "order_form"
    table[("request_order", "order_form")] = "action_listen"
    table[(None, "loop")] = "on"
    ensemble = _ScriptedEnsemble(table)
    agent = _Agent(_domain(), ensemble)
    result = asyncio.run(evaluate_stories([story], agent, tmp_path / "out"))
    # the form is predicted while active; evaluation rejects it and asks again
    assert result.failed_stories == []
    assert result.report["order_form"]["recall"] == 1.0
    assert ensemble.calls == len(result.actions) + 1  # one extra prediction after the rejection


def test_evaluate_stories_circuit_breaker(tmp_path: Path) -> None:
    story = tmp_path / "test_loop.yml"
    steps = "".join("  - action: utter_greet\n" for _ in range(12))
    story.write_text(
        f'version: "3.1"\nstories:\n- story: long\n  steps:\n  - intent: greet\n{steps}', encoding="utf-8"
    )

    class _Always:
        def predict(self, tracker: Any, domain: Domain) -> _Prediction:
            probs = [0.0] * len(domain.action_names_or_texts)
            probs[domain.index_for_action("utter_greet")] = 1.0
            return _Prediction(probs, "RulePolicy")

    result = asyncio.run(evaluate_stories([story], _Agent(_domain(), _Always()), None))
    predicted = [a["predicted"] for a in result.actions]
    assert predicted[:10] == ["utter_greet"] * 10
    assert predicted[10] == "circuit breaker tripped"


@pytest.mark.asyncio
async def test_evaluate_stories_accepts_async_ensemble(tmp_path: Path) -> None:
    class _AsyncEnsemble(_ScriptedEnsemble):
        async def predict(self, tracker: Any, domain: Domain) -> _Prediction:  # type: ignore[override]
            return _ScriptedEnsemble.predict(self, tracker, domain)

    result = await evaluate_stories([DATA / "test_stories.yml"], _Agent(_domain(), _AsyncEnsemble(GOOD)), tmp_path)
    assert result.conversation_accuracy["accuracy"] == 1.0
