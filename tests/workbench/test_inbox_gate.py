"""The inbox's reasons and groups, the gate's verdict, the registry's activation rules."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.workbench.config import GateConfig, WorkbenchConfig
from bot.workbench.conversations import ConversationFilter, filter_conversations
from bot.workbench.gate import compare, is_held_out
from bot.workbench.inbox import collect_items, group_items
from bot.workbench.registry import ModelRegistry, RegistryError


def user(text: str, intent: str, confidence: float, ts: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"event": "user", "text": text, "timestamp": ts, "input_channel": extra.pop("channel", "socketio"),
            "parse_data": {"intent": {"name": intent, "confidence": confidence},
                           "intent_ranking": [{"name": intent, "confidence": confidence},
                                              {"name": "order_status", "confidence": 0.1}], "entities": []},
            **extra}


def bot(text: str, **metadata: Any) -> dict[str, Any]:
    return {"event": "bot", "text": text, "metadata": metadata}


CONVERSATIONS = {
    "a": [user("hi", "greet", 0.99), user("gift cards?", "nlu_fallback", 0.2), bot("sorry")],
    "b": [user("do you sell gift cards", "faq", 0.9), bot("您是想问:", kb={"outcome": "clarify", "options": ["e1", "e2"]})],
    "c": [user("how do i get a receipt", "faq", 0.95), bot("...", kb={"outcome": "no_answer", "id": None})],
    "d": [user("this is useless, get me a person", "complaint", 0.9), {"event": "pause"},
          bot("rate us", handoff="csat"), user("1", "inform", 0.5)],
    "e": [user("where is my order", "order_status", 0.55)],
    "f": [user("/greet", "greet", 1.0)],
}


def test_each_reason_is_found_and_payloads_and_csat_answers_are_not_items() -> None:
    items = {i.text: i for i in collect_items(CONVERSATIONS, low_confidence=0.6)}
    assert items["gift cards?"].reasons == {"fallback"}
    assert items["do you sell gift cards"].reasons == {"kb_clarify"} and items["do you sell gift cards"].faq == ["e1", "e2"]
    assert items["how do i get a receipt"].reasons == {"kb_no_answer"}
    assert items["this is useless, get me a person"].reasons == {"handoff", "low_csat"}  # rated 1
    assert items["where is my order"].reasons == {"low_confidence"}
    assert "hi" not in items and "/greet" not in items and "1" not in items
    assert collect_items(CONVERSATIONS, 0.5, handled={}) and \
        "where is my order" not in {i.text for i in collect_items(CONVERSATIONS, 0.5)}


def test_similar_messages_form_one_group_with_the_real_encoder() -> None:
    from bot.embeddings import get_encoder

    conversations = {
        f"g{n}": [user(t, "nlu_fallback", 0.1, ts=float(n))]
        for n, t in enumerate(["do you sell gift cards", "can i buy a gift card", "gift card available?",
                               "i want to change my delivery address", "change the shipping address please",
                               "what's the weather like"])
    }
    conversations["g9"] = [user("do you sell gift cards", "nlu_fallback", 0.1, ts=9.0)]
    items = collect_items(conversations, 0.5)
    groups = group_items(items, get_encoder(None).encode, WorkbenchConfig().cluster_distance)
    by_text = {m["text"]: g for g in groups for m in g["messages"]}
    assert by_text["do you sell gift cards"] is by_text["can i buy a gift card"] is by_text["gift card available?"]
    assert by_text["i want to change my delivery address"] is by_text["change the shipping address please"]
    assert by_text["what's the weather like"] is not by_text["do you sell gift cards"]
    assert groups[0]["count"] == 4 and groups[0]["messages"][0] == {**groups[0]["messages"][0], "count": 2}
    assert groups[0]["suggested_intents"][0]["intent"] == "order_status"


def test_conversation_filters() -> None:
    def ids(**kw: Any) -> list[str]:
        result = filter_conversations(CONVERSATIONS, ConversationFilter(**kw), 0.6)
        return sorted(c["conversation_id"] for c in result["conversations"])

    assert ids(handoff=True) == ["d"]
    assert ids(csat_max=2) == ["d"]
    assert ids(intent="order_status") == ["e"]
    assert ids(text="GIFT") == ["a", "b"]
    assert ids(channel="wechat") == []
    assert len(ids()) == len(CONVERSATIONS)


def report(**f1: float) -> dict[str, Any]:
    rep = {k: {"f1-score": v, "support": 5, "precision": v, "recall": v} for k, v in f1.items()}
    rep["accuracy"] = sum(f1.values()) / len(f1)
    return {"report": rep, "accuracy": rep["accuracy"], "confusions": {}}


def test_gate_blocks_a_regression_beyond_the_threshold_and_lists_it() -> None:
    gate = GateConfig(max_f1_drop=0.05, max_accuracy_drop=0.05)
    active = report(greet=0.9, order_status=0.8, refund=0.5)
    ok = compare(report(greet=0.88, order_status=0.8, refund=0.9), active, gate)
    assert ok["passed"] and ok["accuracy"]["delta"] > 0
    assert {r["intent"]: r["delta"] for r in ok["intents"]}["refund"] == pytest.approx(0.4)
    bad = compare(report(greet=0.7, order_status=0.8, refund=0.95), active, gate)
    assert not bad["passed"] and [r["intent"] for r in bad["regressions"]] == ["greet"]
    first = compare(report(greet=0.7), None, gate)
    assert first["passed"] and first["accuracy"]["active"] is None


def test_held_out_split_is_stable_and_near_its_share() -> None:
    texts = [f"message number {n}" for n in range(2000)]
    held = [t for t in texts if is_held_out(t, 0.2)]
    assert 0.17 < len(held) / len(texts) < 0.23
    assert held == [t for t in texts if is_held_out(t.upper() + " ", 0.2)]  # normalized text, same answer


def test_registry_activation_rules_and_rollback(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for name, passed in (("m1", True), ("m2", False), ("m3", True)):
        (tmp_path / f"{name}.tar.gz").write_bytes(b"x")
        registry.add(str(tmp_path / f"{name}.tar.gz"), "tina", "v1",
                     {"passed": passed, "regressions": [] if passed else [{"intent": "greet"}]})
    registry.activate("m1", "admin", is_admin=True)
    with pytest.raises(RegistryError) as info:
        registry.activate("m2", "tina", is_admin=False)
    assert info.value.status == 409 and "override" in str(info.value)
    with pytest.raises(RegistryError) as info:
        registry.activate("m2", "tina", is_admin=False, override=True)
    assert info.value.status == 403
    record = registry.activate("m2", "root", is_admin=True, override=True)
    assert record["override"] and record["previous"] == "m1"
    registry.activate("m3", "root", is_admin=True)
    assert registry.rollback("root")["model"] == "m2"
    assert registry.active()["name"] == "m2"
    history = registry.read()["history"]
    assert [(h["action"], h["model"], h["by"]) for h in history] == [
        ("activate", "m1", "admin"), ("activate", "m2", "root"), ("activate", "m3", "root"), ("rollback", "m2", "root")]
    with pytest.raises(RegistryError) as info:
        registry.activate("nope", "root", is_admin=True)
    assert info.value.status == 404


def test_config_errors_name_the_key_and_the_fix() -> None:
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="Unknown key.*low_confidense.*Valid keys"):
        WorkbenchConfig.from_section({"low_confidense": 0.5}, "config.yml")
    with pytest.raises(ConfigError, match=r"workbench.gate.max_f1_drop.*\[0.0, 1.0\]"):
        WorkbenchConfig.from_section({"gate": {"max_f1_drop": 2}}, "config.yml")
    with pytest.raises(ConfigError, match="must be a number"):
        WorkbenchConfig.from_section({"cluster_distance": "far"}, "config.yml")
    config = WorkbenchConfig.from_section({"gate": {"holdout": 0.1, "max_new_story_failures": 2}})
    assert config.gate.holdout == 0.1 and config.gate.max_new_story_failures == 2 and config.low_confidence == 0.5
