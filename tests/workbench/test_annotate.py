"""Saving annotations into a project: validated, undone on a new error, safe under concurrent saves."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.shared.yaml_io import read_yaml_file, to_plain
from bot.workbench.annotate import AnnotationRejected, Annotator, conversation_steps
from bot.workbench.config import WorkbenchConfig

REPO = Path(__file__).resolve().parents[2]


def git_numstat(root: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["git", "diff", "--numstat"], cwd=root, check=True, capture_output=True, text=True).stdout
    return {f: (int(a), int(d)) for a, d, f in (line.split("\t") for line in out.splitlines())}


def examples_of(root: Path, intent: str) -> list[str]:
    data = to_plain(read_yaml_file(root / "data" / "nlu.yml"))
    block = next(i["examples"] for i in data["nlu"] if i.get("intent") == intent)
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def test_concurrent_saves_from_threads_and_processes_all_land(shop: Path) -> None:
    annotator = Annotator(shop)
    texts = [f"where did parcel {n} go" for n in range(4)]
    errors: list[BaseException] = []

    def save(text: str) -> None:
        try:
            annotator.add_example(text, "order_status")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    script = ("import sys; from bot.workbench.annotate import Annotator; "
              "Annotator(sys.argv[1]).add_example(sys.argv[2], 'order_status')")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(shop), f"parcel from process {n}"], cwd=REPO)
             for n in range(2)]
    threads = [threading.Thread(target=save, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert not errors
    got = examples_of(shop, "order_status")
    for text in texts + ["parcel from process 0", "parcel from process 1"]:
        assert got.count(text) == 1
    assert git_numstat(shop) == {"data/nlu.yml": (6, 0)}


def test_a_save_that_breaks_validation_is_undone_byte_for_byte(shop: Path) -> None:
    # A domain folder: the workbench cannot add the new intent there, so `data validate` fails.
    (shop / "domain").mkdir()
    shutil.move(shop / "domain.yml", shop / "domain" / "domain.yml")
    before = (shop / "data" / "nlu.yml").read_bytes()
    annotator = Annotator(shop)
    with pytest.raises(AnnotationRejected) as info:
        annotator.add_example("do you sell gift cards", "gift_card")
    assert any("gift_card" in f and "not listed in the domain" in f for f in info.value.findings), info.value.findings
    assert (shop / "data" / "nlu.yml").read_bytes() == before
    assert not annotator.new_intent_path().exists()
    assert annotator.handled() == {}  # not marked done: it stays in the inbox


def test_entities_must_be_domain_entities_and_spans_of_the_text(shop: Path) -> None:
    annotator = Annotator(shop)
    with pytest.raises(AnnotationRejected, match="colour"):
        annotator.add_example("a red jacket", "return_request", [{"start": 2, "end": 5, "entity": "colour"}])
    with pytest.raises(AnnotationRejected, match="not a span"):
        annotator.add_example("a red jacket", "return_request", [{"start": 2, "end": 50, "entity": "product"}])
    result = annotator.add_example("return the red jacket", "return_request",
                                   [{"start": 15, "end": 21, "entity": "product"}])
    assert result.added.strip() == "- return the red [jacket](product)"
    assert result.file == "data/nlu.yml" and result.as_dict()["validation"]["errors"] == 0
    assert git_numstat(shop) == {"data/nlu.yml": (1, 0)}


def test_faq_phrasing_and_test_story(shop: Path) -> None:
    kb = shop / "knowledge_base"
    kb.mkdir()
    shutil.copy(REPO / "knowledge_base" / "payment.yml", kb / "payment.yml")
    annotator = Annotator(shop)
    result = annotator.add_faq_phrasing("能用数字人民币付款吗", "payment_methods", "zh")
    assert result.file == "knowledge_base/payment.yml"
    entry = next(e for e in to_plain(read_yaml_file(kb / "payment.yml"))["entries"] if e["id"] == "payment_methods")
    assert entry["questions"]["zh"][-1] == "能用数字人民币付款吗"
    with pytest.raises(AnnotationRejected, match="No FAQ entry 'nope'"):
        annotator.add_faq_phrasing("x", "nope", "zh")

    events = [{"event": "action", "name": "action_session_start"},
              {"event": "user", "text": "where is my order",
               "parse_data": {"intent": {"name": "order_status", "confidence": 0.9}, "entities": []}},
              {"event": "action", "name": "utter_order_status"}, {"event": "action", "name": "action_listen"}]
    steps = conversation_steps(events)
    assert steps == [{"user": "where is my order", "intent": "order_status"}, {"action": "utter_order_status"}]
    annotator.save_test_story("order", steps)
    annotator.save_test_story("order again", steps)
    stories = to_plain(read_yaml_file(shop / WorkbenchConfig().test_stories))["stories"]
    assert [s["story"] for s in stories] == ["order", "order again"]
    with pytest.raises(AnnotationRejected, match="utter_nope"):
        annotator.save_test_story("bad", steps + [{"action": "utter_nope"}])


def test_dismissed_texts_are_remembered_normalized(shop: Path) -> None:
    annotator = Annotator(shop)
    annotator.dismiss(["Do you  sell GIFT cards"], "spam")
    from bot.workbench.annotate import text_key

    assert annotator.handled()[text_key("do you sell gift cards")]["status"] == "dismissed"
    state = json.loads((shop / ".kefu" / "workbench" / "state.json").read_text())
    assert list(state["handled"].values())[0]["reason"] == "spam"
