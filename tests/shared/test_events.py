"""Events must serialise exactly like Rasa 3's and survive a JSON round trip."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.shared import events as ev
from bot.shared.constants import ACTION_SESSION_START_NAME
from bot.shared.events import (
    EVENT_TYPES,
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    AgentUttered,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    Event,
    FollowupAction,
    LoopInterrupted,
    ReminderCancelled,
    ReminderScheduled,
    Restarted,
    SessionStarted,
    SlotSet,
    StoryExported,
    UserUttered,
    UserUtteranceReverted,
)
from bot.shared.exceptions import InvalidRequest

DATA = Path(__file__).resolve().parent.parent / "data" / "trackers"

# One Rasa-3-shaped dict per event type (as Rasa's ``as_dict`` writes them).
RASA_EVENT_DICTS = [
    {
        "event": "user",
        "timestamp": 1.5,
        "metadata": {"model_id": "m1"},
        "text": "I want italian",
        "parse_data": {
            "intent": {"name": "inform", "confidence": 0.9},
            "entities": [{"entity": "cuisine", "value": "italian", "start": 7, "end": 14}],
            "text": "I want italian",
            "message_id": "abc",
            "metadata": {},
            "intent_ranking": [{"name": "inform", "confidence": 0.9}],
            "sentiment": {"label": "neutral", "score": 0.0},
            "language": "en",
        },
        "input_channel": "rest",
        "message_id": "abc",
    },
    {
        "event": "bot",
        "timestamp": 2.0,
        "metadata": {"utter_action": "utter_greet"},
        "text": "Hi!",
        "data": {"elements": None, "quick_replies": None, "buttons": [{"title": "A", "payload": "/a"}],
                 "attachment": None, "image": None, "custom": None},
    },
    {"event": "action", "timestamp": 3.0, "name": "utter_greet", "policy": "RulePolicy",
     "confidence": 1.0, "action_text": None, "hide_rule_turn": True},
    {"event": "slot", "timestamp": 4.0, "name": "cuisine", "value": "italian"},
    {"event": "active_loop", "timestamp": 5.0, "name": "restaurant_form"},
    {"event": "followup", "timestamp": 6.0, "name": "action_search"},
    {"event": "reset_slots", "timestamp": 7.0},
    {"event": "restart", "timestamp": 8.0},
    {"event": "session_started", "timestamp": 9.0},
    {"event": "action_execution_rejected", "timestamp": 10.0, "name": "restaurant_form",
     "policy": "RulePolicy", "confidence": 1.0},
    {"event": "pause", "timestamp": 11.0},
    {"event": "resume", "timestamp": 12.0},
    {"event": "entities", "timestamp": 13.0, "entities": [{"entity": "city", "value": "Berlin"}]},
    {"event": "loop_interrupted", "timestamp": 14.0, "is_interrupted": True},
    {"event": "rewind", "timestamp": 15.0},
    {"event": "undo", "timestamp": 16.0},
    {"event": "reminder", "timestamp": 17.0, "intent": "EXTERNAL_remind",
     "date_time": "2024-05-01T10:00:00+08:00", "entities": [{"entity": "x", "value": 1}],
     "name": "remind_me", "kill_on_user_msg": False},
    {"event": "cancel_reminder", "timestamp": 18.0, "name": "remind_me", "intent": None,
     "entities": None},
    {"event": "export", "timestamp": 19.0},
    {"event": "agent", "timestamp": 20.0, "text": "human here", "data": {"agent": "alice"}},
    {"event": "user_featurization", "timestamp": 21.0, "use_text_for_featurization": False},
]


def test_event_registry_covers_every_rasa_event_type() -> None:
    expected = {
        "user", "bot", "action", "slot", "active_loop", "followup", "reset_slots", "restart",
        "session_started", "action_execution_rejected", "pause", "resume", "entities",
        "loop_interrupted", "rewind", "undo", "reminder", "cancel_reminder", "export", "agent",
        "user_featurization",
    }
    assert expected <= set(EVENT_TYPES)
    assert {d["event"] for d in RASA_EVENT_DICTS} == expected


@pytest.mark.parametrize("data", RASA_EVENT_DICTS, ids=lambda d: d["event"])
def test_event_round_trip_is_identical(data: dict) -> None:
    event = Event.from_parameters(data)
    assert event is not None
    assert event.type_name == data["event"]
    assert event.as_dict() == data
    # the serialised form is plain JSON and parses back to an equal event
    again = Event.from_parameters(json.loads(json.dumps(event.as_dict())))
    assert again == event
    assert hash(again) == hash(event)


def test_event_from_parameters_unknown_type_names_it_and_lists_valid() -> None:
    with pytest.raises(InvalidRequest) as info:
        Event.from_parameters({"event": "slott", "name": "x"})
    message = str(info.value)
    assert "'slott'" in message
    assert "slot" in message and "user_featurization" in message
    assert isinstance(info.value, ValueError)


def test_event_from_parameters_without_event_key_returns_none() -> None:
    assert Event.from_parameters({"name": "x"}) is None
    assert ev.deserialise_events([{"name": "x"}, {"event": "restart"}]) == [Restarted()]


def test_event_legacy_form_events_are_read_and_written_as_new_names() -> None:
    form = Event.from_parameters({"event": "form", "name": "f", "timestamp": 1})
    assert isinstance(form, ActiveLoop) and form.as_dict()["event"] == "active_loop"
    validation = Event.from_parameters({"event": "form_validation", "validate": False})
    assert isinstance(validation, LoopInterrupted) and validation.is_interrupted is True


def test_event_timestamp_defaults_to_now_and_metadata_to_empty() -> None:
    before = __import__("time").time()
    event = SlotSet("a", 1)
    assert event.timestamp >= before
    assert event.metadata == {}
    assert "metadata" not in event.as_dict()


def test_user_uttered_builds_parse_data_like_rasa() -> None:
    event = UserUttered(
        "hello",
        {"name": "greet", "confidence": 0.8},
        [{"entity": "name", "value": "Ann"}],
        parse_data={"intent_ranking": [{"name": "greet", "confidence": 0.8}], "language": "en"},
        message_id="m1",
        input_channel="rest",
    )
    assert event.intent_name == "greet"
    assert event.parse_data == {
        "intent": {"name": "greet", "confidence": 0.8},
        "entities": [{"entity": "name", "value": "Ann"}],
        "text": "hello",
        "message_id": "m1",
        "metadata": {},
        "intent_ranking": [{"name": "greet", "confidence": 0.8}],
        "language": "en",
    }
    d = event.as_dict()
    assert set(d) == {"event", "timestamp", "text", "parse_data", "input_channel", "message_id", "metadata"}


def test_user_uttered_entities_added_later_are_not_persisted_in_parse_data() -> None:
    event = Event.from_parameters(RASA_EVENT_DICTS[0])
    event.entities.append({"entity": "extra", "value": 1})
    assert len(event.parse_data["entities"]) == 1


def test_user_uttered_equality_ignores_timestamp_and_entity_key_order() -> None:
    a = UserUttered("hi", {"name": "greet"}, [{"entity": "a", "value": 1}], timestamp=1)
    b = UserUttered("hi", {"name": "greet"}, [{"value": 1, "entity": "a"}], timestamp=2)
    c = UserUttered("hi", {"name": "deny"}, timestamp=1)
    assert a == b and hash(a) == hash(b)
    assert a != c


def test_user_uttered_create_external_marks_trigger_intent() -> None:
    event = UserUttered.create_external("remind", [{"entity": "x", "value": 1}], "rest")
    assert event.text == "EXTERNAL: remind"
    assert event.intent_name == "remind"
    assert event.metadata == {"is_external": True}
    assert event.entities == [{"entity": "x", "value": 1}]
    assert event.input_channel == "rest"


def test_user_uttered_sub_state_uses_intent_entities_roles_groups() -> None:
    event = UserUttered(
        "from berlin",
        {"name": "inform"},
        [{"entity": "city", "value": "Berlin", "role": "from", "group": "1"}],
    )
    assert event.as_sub_state() == {
        "text": "from berlin",
        "intent": "inform",
        "entities": ["city", "city#from", "city#1"],
    }
    event.use_text_for_featurization = False
    assert event.as_sub_state() == {"intent": "inform", "entities": ["city", "city#from", "city#1"]}
    assert UserUttered("only text").as_sub_state() == {"text": "only text"}
    assert UserUttered(intent={"name": "greet"}).as_sub_state() == {"intent": "greet"}


def test_user_uttered_empty_is_empty() -> None:
    assert UserUttered.empty().is_empty()
    assert not UserUttered("x").is_empty()


def test_action_executed_needs_name_or_text() -> None:
    with pytest.raises(InvalidRequest, match="name"):
        ActionExecuted()
    with pytest.raises(InvalidRequest):
        Event.from_parameters({"event": "action"})
    assert ActionExecuted(action_text="Hi there").as_sub_state() == {"action_text": "Hi there"}
    assert ActionExecuted("utter_x").as_sub_state() == {"action_name": "utter_x"}


def test_action_executed_equality_uses_name_text_and_metadata() -> None:
    assert ActionExecuted("a", policy="P1", timestamp=1) == ActionExecuted("a", policy="P2", timestamp=2)
    assert ActionExecuted("a") != ActionExecuted("b")
    assert ActionExecuted("a", metadata={"k": 1}) != ActionExecuted("a")
    assert ActionExecuted("a", metadata={"k": None}) == ActionExecuted("a")


def test_bot_uttered_equality_ignores_none_data_values() -> None:
    a = BotUttered("hi", {"buttons": None, "image": "x"})
    b = BotUttered("hi", {"image": "x"})
    assert a == b and hash(a) == hash(b)
    assert BotUttered("hi") != BotUttered("ho")
    assert BotUttered("t", {"image": "u", "attachment": "u"}).message()["attachment"] is None


def test_attribute_less_events_are_equal_per_class_only() -> None:
    assert Restarted(timestamp=1) == Restarted(timestamp=2)
    assert Restarted() != SessionStarted()
    assert hash(ConversationPaused()) != hash(ConversationResumed())
    assert len({AllSlotsReset(), AllSlotsReset(), UserUtteranceReverted(), ActionReverted()}) == 3


def test_slot_set_and_other_events_compare_by_payload() -> None:
    assert SlotSet("a", [1, 2]) == SlotSet("a", [1, 2])
    assert SlotSet("a", 1) != SlotSet("a", 2)
    assert hash(SlotSet("a", {"x": 1})) == hash(SlotSet("a", {"x": 1}))
    assert FollowupAction("x") == FollowupAction("x") != FollowupAction("y")
    assert ActiveLoop(None) == ActiveLoop(None) != ActiveLoop("f")
    assert ActionExecutionRejected("f") == ActionExecutionRejected("f", policy="P")
    assert EntitiesAdded([{"entity": "a"}]) != EntitiesAdded([])
    assert LoopInterrupted(True) != LoopInterrupted(False)
    assert DefinePrevUserUtteredFeaturization(True) != DefinePrevUserUtteredFeaturization(False)
    assert AgentUttered("a", {"x": 1}) == AgentUttered("a", {"x": 1})
    assert StoryExported("p") != StoryExported("q")
    assert ReminderCancelled("n") != ReminderCancelled("m")


def test_reminder_scheduled_parses_iso_and_names_job() -> None:
    event = Event.from_parameters(RASA_EVENT_DICTS[16])
    assert isinstance(event, ReminderScheduled)
    assert event.trigger_date_time.utcoffset().total_seconds() == 8 * 3600
    assert event.kill_on_user_message is False
    job = event.scheduled_job_name("user1")
    assert job.endswith("__sender_id:user1")
    assert ReminderCancelled("remind_me").cancels_job_with_name(job, "user1")
    assert ReminderCancelled().cancels_job_with_name(job, "user1")
    assert not ReminderCancelled("other").cancels_job_with_name(job, "user1")
    assert not ReminderCancelled().cancels_job_with_name(job, "user2")
    zulu = ReminderScheduled("x", datetime(2024, 1, 1, tzinfo=timezone.utc), name="z")
    again = Event.from_parameters({**zulu.as_dict(), "date_time": "2024-01-01T00:00:00Z"})
    assert again.trigger_date_time == zulu.trigger_date_time


def test_split_events_and_session_start_detection() -> None:
    events = [
        ActionExecuted(ACTION_SESSION_START_NAME),
        SessionStarted(),
        ActionExecuted("action_listen"),
        ActionExecuted(ACTION_SESSION_START_NAME),
        SessionStarted(),
    ]
    parts = ev.split_events(events, ActionExecuted, {"action_name": ACTION_SESSION_START_NAME})
    assert [len(p) for p in parts] == [3, 2]
    assert ev.do_events_begin_with_session_start(parts[1])
    assert not ev.do_events_begin_with_session_start(events[2:])


@pytest.mark.parametrize("fixture", ["tracker_moodbot.json", "formbot_rasa36.json"])
def test_event_rasa_tracker_events_round_trip(fixture: str) -> None:
    dump = json.loads((DATA / fixture).read_text(encoding="utf-8"))
    events = ev.deserialise_events(dump["events"])
    assert len(events) == len(dump["events"])
    assert [e.as_dict() for e in events] == dump["events"]
    # and through a JSON text again, keys and values unchanged
    assert json.loads(json.dumps([e.as_dict() for e in events])) == dump["events"]


def test_event_fingerprint_ignores_timestamp() -> None:
    assert SlotSet("a", 1, timestamp=1).fingerprint() == SlotSet("a", 1, timestamp=2).fingerprint()
    assert SlotSet("a", 1).fingerprint() != SlotSet("a", 2).fingerprint()


@pytest.mark.parametrize(
    "data",
    [
        {"event": "user", "text": "hi", "parse_data": "not a dict"},
        {"event": "reminder", "intent": "x", "date_time": "not a date"},
        {"event": "action", "name": None},
    ],
    ids=["user-bad-parse-data", "reminder-bad-date", "action-without-name"],
)
def test_event_from_parameters_bad_payload_raises_invalid_request(data: dict) -> None:
    with pytest.raises(InvalidRequest) as info:
        Event.from_parameters(data)
    assert data["event"] in str(info.value)


def test_event_legacy_topic_events_are_skipped() -> None:
    assert Event.from_parameters({"event": "topic", "topic": "x"}) is None
    assert ev.deserialise_events([{"event": "topic"}, {"event": "pause"}]) == [ConversationPaused()]


@pytest.mark.parametrize("bad", [[{}], {"x": 1}, 3, True])
def test_event_from_parameters_refuses_a_non_string_type(bad) -> None:
    """Found by the OpenAPI fuzz run: ``{"event": [{}]}`` was a 500 (unhashable list)."""
    with pytest.raises(InvalidRequest, match="'event' key must name an event type as a string"):
        Event.from_parameters({"event": bad})
