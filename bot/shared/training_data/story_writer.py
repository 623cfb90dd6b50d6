"""Write stories / test stories back to Rasa YAML (Rasa's ``YAMLStoryWriter``).

Used for ``failed_test_stories.yml``: wrongly predicted actions carry an end-of-
line comment ``# predicted: <action>`` exactly where Rasa puts it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Optional

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_SESSION_START_NAME,
    RULE_SNIPPET_ACTION_NAME,
)
from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from bot.shared.training_data.stories import (
    KEY_ACTION,
    KEY_ACTIVE_LOOP,
    KEY_BOT_END_TO_END_MESSAGE,
    KEY_CHECKPOINT,
    KEY_ENTITIES,
    KEY_RULE_NAME,
    KEY_RULES,
    KEY_SLOT_NAME,
    KEY_STEPS,
    KEY_STORIES,
    KEY_STORY_NAME,
    KEY_USER_INTENT,
    KEY_USER_MESSAGE,
    LATEST_TRAINING_DATA_FORMAT_VERSION,
    STORY_START,
    RuleStep,
    StoryStep,
)


def annotate_entities(text: str, entities: list[dict[str, Any]]) -> str:
    """``text`` with ``[value](entity)`` markup for entities that have offsets."""
    spans = sorted(
        (e for e in entities if isinstance(e.get("start"), int) and isinstance(e.get("end"), int)),
        key=lambda e: e["start"],
    )
    out, last = [], 0
    for e in spans:
        start, end = e["start"], e["end"]
        if start < last or end > len(text):
            continue
        surface = text[start:end]
        out.append(text[last:start])
        extra = {k: e[k] for k in ("role", "group") if e.get(k) is not None}
        value = e.get("value")
        if extra or (value is not None and str(value) != surface):
            import json

            d = {"entity": e.get("entity")}
            if value is not None and str(value) != surface:
                d["value"] = value
            d.update(extra)
            out.append(f"[{surface}]{json.dumps(d, ensure_ascii=False)}")
        else:
            out.append(f"[{surface}]({e.get('entity')})")
        last = end
    out.append(text[last:])
    return "".join(out)


def _user_step(event: UserUttered, is_test_story: bool) -> CommentedMap:
    step = CommentedMap()
    intent = event.intent or {}
    intent_name = intent.get("full_retrieval_intent_name") or intent.get("name")
    if event.text and (is_test_story or not intent_name):
        text = annotate_entities(event.text, event.entities or [])
        step[KEY_USER_MESSAGE] = LiteralScalarString(text + "\n") if "\n" in text or is_test_story else text
        if intent_name:
            step[KEY_USER_INTENT] = intent_name
    else:
        step[KEY_USER_INTENT] = intent_name
        entities = [e for e in (event.entities or []) if e.get("entity")]
        if entities:
            seq = CommentedSeq()
            for e in entities:
                if e.get("value") in (None, ""):
                    seq.append(e["entity"])
                else:
                    item = CommentedMap()
                    item[e["entity"]] = e["value"]
                    for k in ("role", "group"):
                        if e.get(k) is not None:
                            item[k] = e[k]
                    seq.append(item)
            step[KEY_ENTITIES] = seq
    comment = _inline_comment(event)
    if comment:
        step.yaml_add_eol_comment(comment, next(reversed(step)))
    return step


def _inline_comment(event: Any) -> Optional[str]:
    fn = getattr(event, "inline_comment", None)
    return fn() if callable(fn) else None


def events_as_steps(events: Iterable[Any], is_test_story: bool = False) -> CommentedSeq:
    """Story steps for a list of events (listen / session start / ``...`` omitted)."""
    steps = CommentedSeq()
    for event in events:
        if isinstance(event, UserUttered):
            if not event.intent_name and not event.text:
                continue
            steps.append(_user_step(event, is_test_story))
        elif isinstance(event, ActionExecuted):
            name = event.action_name
            if name in (ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME, RULE_SNIPPET_ACTION_NAME):
                if _inline_comment(event) is None:
                    continue
            step = CommentedMap()
            if name is None and event.action_text is not None:
                step[KEY_BOT_END_TO_END_MESSAGE] = event.action_text
                key = KEY_BOT_END_TO_END_MESSAGE
            else:
                step[KEY_ACTION] = name
                key = KEY_ACTION
            comment = _inline_comment(event)
            if comment:
                step.yaml_add_eol_comment(comment, key)
            steps.append(step)
        elif isinstance(event, SlotSet):
            last = steps[-1] if steps else None
            if isinstance(last, CommentedMap) and list(last.keys()) == [KEY_SLOT_NAME]:
                slots = last[KEY_SLOT_NAME]
            else:
                slots = CommentedSeq()
                step = CommentedMap()
                step[KEY_SLOT_NAME] = slots
                steps.append(step)
            item = CommentedMap()
            item[event.key] = event.value
            slots.append(item)
        elif isinstance(event, ActiveLoop):
            step = CommentedMap()
            step[KEY_ACTIVE_LOOP] = event.name
            steps.append(step)
    return steps


def _checkpoint_step(name: str, conditions: dict[str, Any]) -> CommentedMap:
    step = CommentedMap()
    step[KEY_CHECKPOINT] = name
    if conditions:
        seq = CommentedSeq()
        for k, v in conditions.items():
            item = CommentedMap()
            item[k] = v
            seq.append(item)
        step[KEY_SLOT_NAME] = seq
    return step


def _story_item(name: str, steps: CommentedSeq, is_rule: bool = False) -> CommentedMap:
    item = CommentedMap()
    item[KEY_RULE_NAME if is_rule else KEY_STORY_NAME] = name
    item[KEY_STEPS] = steps
    return item


def _dump(data: CommentedMap) -> str:
    yaml = YAML(typ="rt")
    yaml.allow_unicode = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _document(stories: list[CommentedMap], rules: list[CommentedMap]) -> CommentedMap:
    doc = CommentedMap()
    doc["version"] = DoubleQuotedScalarString(LATEST_TRAINING_DATA_FORMAT_VERSION)
    if stories:
        doc[KEY_STORIES] = CommentedSeq(stories)
    if rules:
        doc[KEY_RULES] = CommentedSeq(rules)
    return doc


def dump_stories(
    stories: Iterable[tuple[str, Iterable[Any]]], is_test_story: bool = True
) -> str:
    """YAML for ``(story name, events)`` pairs (e.g. failed test conversations)."""
    items = [_story_item(name, events_as_steps(events, is_test_story)) for name, events in stories]
    return _dump(_document(items, []))


def dump_story_steps(story_steps: Iterable[StoryStep], is_test_story: bool = False) -> str:
    """YAML for story/rule steps, keeping checkpoints (Rasa's ``YAMLStoryWriter.dumps``)."""
    stories, rules = [], []
    for step in story_steps:
        seq = CommentedSeq()
        for cp in step.start_checkpoints:
            if cp.name != STORY_START:
                seq.append(_checkpoint_step(cp.name, cp.conditions))
        events = step.get_rules_events() if isinstance(step, RuleStep) else step.events
        for s in events_as_steps([e for e in events if not isinstance(e, list)], is_test_story):
            seq.append(s)
        for cp in step.end_checkpoints:
            seq.append(_checkpoint_step(cp.name, {}))
        item = _story_item(step.block_name or "", seq, isinstance(step, RuleStep))
        if isinstance(step, RuleStep) and step.condition_events_indices:
            item["condition"] = events_as_steps(step.get_rules_condition())
        (rules if isinstance(step, RuleStep) else stories).append(item)
    return _dump(_document(stories, rules))


def write_stories(
    stories: Iterable[tuple[str, Iterable[Any]]],
    path: str | Path,
    message_if_empty: str = "None of the test stories failed - all good!",
) -> None:
    """Write stories to ``path``; a one-line comment when there are none (as Rasa)."""
    stories = list(stories)
    text = dump_stories(stories) if stories else f"# {message_if_empty}"
    Path(path).write_text(text, encoding="utf-8")
