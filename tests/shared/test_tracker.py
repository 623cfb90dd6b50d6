"""DialogueStateTracker must rebuild the same state and JSON as Rasa 3.6."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.shared.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from bot.shared.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    FollowupAction,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from bot.shared.tracker import (
    Dialogue,
    DialogueStateTracker,
    EventVerbosity,
    get_active_loop_name,
    get_trackers_for_conversation_sessions,
    is_prev_action_listen_in_state,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "trackers"

RASA_TRACKER_KEYS = {
    "sender_id", "slots", "latest_message", "latest_event_time", "followup_action", "paused",
    "events", "latest_input_channel", "active_loop", "latest_action", "latest_action_name",
}


class FakeSlot:
    """The slot interface the tracker relies on (name/value/initial_value/reset)."""

    def __init__(self, name: str, initial_value: Any = None) -> None:
        self.name = name
        self.initial_value = initial_value
        self.value = initial_value

    def reset(self) -> None:
        self.value = self.initial_value


def _slots(*names: str, **initial: Any) -> list[FakeSlot]:
    return [FakeSlot(n) for n in names] + [FakeSlot(n, v) for n, v in initial.items()]


def _user(text: str, intent: str, entities: list | None = None, **kw: Any) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, entities or [], **kw)


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("fixture", "slot_names"),
    [
        ("tracker_moodbot.json", ["name", "requested_slot", "session_started_metadata"]),
        (
            "formbot_rasa36.json",
            ["cuisine", "num_people", "outdoor_seating", "requested_slot", "session_started_metadata"],
        ),
    ],
)
def test_tracker_current_state_equals_rasa_dump(fixture: str, slot_names: list[str]) -> None:
    dump = _load(fixture)
    tracker = DialogueStateTracker.from_dict(dump["sender_id"], dump["events"], _slots(*slot_names))
    state = tracker.current_state(EventVerbosity.ALL)
    assert set(state) == RASA_TRACKER_KEYS
    assert state == dump
    assert json.loads(json.dumps(state)) == dump


def test_tracker_fresh_state_matches_rasa_defaults() -> None:
    tracker = DialogueStateTracker("u1", _slots("a"))
    state = tracker.current_state()
    assert state == {
        "sender_id": "u1",
        "slots": {"a": None},
        "latest_message": {"intent": {}, "entities": [], "text": None, "message_id": None, "metadata": {}},
        "latest_event_time": None,
        "followup_action": ACTION_LISTEN_NAME,
        "paused": False,
        "events": None,
        "latest_input_channel": None,
        "active_loop": {},
        "latest_action": {},
        "latest_action_name": None,
    }
    assert tracker.latest_message.is_empty()
    assert tracker.latest_bot_utterance == BotUttered.empty()


def test_tracker_from_events_sets_slots_message_loop_pause_followup() -> None:
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("italian", "inform", [{"entity": "cuisine", "value": "italian"}], input_channel="rest"),
        SlotSet("cuisine", "italian"),
        SlotSet("unknown_slot", 1),
        ActionExecuted("restaurant_form"),
        ActiveLoop("restaurant_form"),
        BotUttered("How many?"),
        ConversationPaused(),
        FollowupAction("action_search"),
    ]
    tracker = DialogueStateTracker.from_events("u1", events, _slots("cuisine", "num"))
    assert tracker.get_slot("cuisine") == "italian"
    assert tracker.get_slot("num") is None
    assert tracker.get_slot("unknown_slot") is None
    assert "unknown_slot" not in tracker.current_slot_values()
    assert tracker.latest_message.text == "italian"
    assert tracker.latest_message.intent_name == "inform"
    assert list(tracker.get_latest_entity_values("cuisine")) == ["italian"]
    assert tracker.latest_bot_utterance.text == "How many?"
    assert tracker.active_loop_name == "restaurant_form"
    assert tracker.active_loop["trigger_message"]["text"] == "italian"
    assert tracker.is_paused()
    assert tracker.followup_action == "action_search"
    assert tracker.latest_action == {"action_name": "restaurant_form"}
    assert tracker.latest_action_name == "restaurant_form"
    assert tracker.get_latest_input_channel() == "rest"
    tracker.update(ConversationResumed())
    tracker.update(ActionExecuted("action_search"))
    assert not tracker.is_paused()
    assert tracker.followup_action is None


def test_tracker_without_slots_accepts_any_slot() -> None:
    tracker = DialogueStateTracker.from_events("u", [SlotSet("anything", 3)])
    assert tracker.get_slot("anything") == 3
    tracker.update(AllSlotsReset())
    assert tracker.get_slot("anything") is None


def test_tracker_slots_are_copied_not_shared() -> None:
    slots = _slots("a")
    t1 = DialogueStateTracker.from_events("u1", [SlotSet("a", 1)], slots)
    t2 = DialogueStateTracker("u2", slots)
    assert t1.get_slot("a") == 1
    assert t2.get_slot("a") is None
    assert slots[0].value is None


def test_tracker_restart_resets_state_and_schedules_session_start() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("hi", "greet"),
            SlotSet("a", "x"),
            ActiveLoop("form"),
            ConversationPaused(),
            Restarted(),
        ],
        _slots("a", b="init"),
    )
    assert tracker.current_slot_values() == {"a": None, "b": "init"}
    assert tracker.active_loop == {}
    assert not tracker.is_paused()
    assert tracker.latest_message.is_empty()
    assert tracker.followup_action == ACTION_SESSION_START_NAME
    assert tracker.applied_events() == []
    assert tracker.idx_after_latest_restart() == 6
    assert tracker.events_after_latest_restart() == []
    tracker.update(ActionExecuted(ACTION_SESSION_START_NAME))
    assert tracker.events_after_latest_restart() == [ActionExecuted(ACTION_SESSION_START_NAME)]
    assert len(tracker.current_state(EventVerbosity.ALL)["events"]) == 7
    assert len(tracker.current_state(EventVerbosity.AFTER_RESTART)["events"]) == 1


def test_tracker_session_started_resets_slots_and_applied_events() -> None:
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("hi", "greet"),
        SlotSet("name", "Ann"),
        ActionExecuted(ACTION_SESSION_START_NAME),
        SessionStarted(),
    ]
    tracker = DialogueStateTracker.from_events("u", events, _slots("name"))
    assert tracker.get_slot("name") is None
    assert tracker.followup_action == ACTION_LISTEN_NAME
    assert tracker.applied_events() == []
    # the processor carries slots over by re-setting them after SessionStarted
    tracker.update(SlotSet("name", "Ann"))
    tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
    assert tracker.get_slot("name") == "Ann"
    assert tracker.applied_events() == [SlotSet("name", "Ann"), ActionExecuted(ACTION_LISTEN_NAME)]
    sessions = get_trackers_for_conversation_sessions(tracker)
    assert [len(s.events) for s in sessions] == [3, 4]


def test_tracker_rewind_removes_latest_user_turn() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("hi", "greet"),
            ActionExecuted("utter_greet"),
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("italian", "inform"),
            SlotSet("cuisine", "italian"),
            UserUtteranceReverted(),
        ],
        _slots("cuisine"),
    )
    assert tracker.applied_events() == [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("hi", "greet"),
        ActionExecuted("utter_greet"),
    ]
    assert tracker.latest_message.text == "hi"
    assert tracker.latest_action_name == "utter_greet"
    # events logged after the reverted message (the slot) are undone with it
    assert tracker.get_slot("cuisine") is None
    assert len(tracker.events) == 7


def test_tracker_undo_removes_latest_action_and_its_events() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("hi", "greet"),
            ActionExecuted("action_set"),
            SlotSet("a", 1),
            ActionReverted(),
        ],
        _slots("a"),
    )
    assert tracker.get_slot("a") is None
    assert tracker.latest_action_name == ACTION_LISTEN_NAME
    assert tracker.applied_events() == [ActionExecuted(ACTION_LISTEN_NAME), _user("hi", "greet")]


def test_tracker_loop_happy_path_collapses_repeated_form_turns() -> None:
    form = "restaurant_form"
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("book", "request_restaurant"),
        ActionExecuted(form),
        ActiveLoop(form),
        SlotSet("requested_slot", "cuisine"),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("italian", "inform"),
        DefinePrevUserUtteredFeaturization(False),
        ActionExecuted(form),
        SlotSet("cuisine", "italian"),
    ]
    tracker = DialogueStateTracker.from_events("u", events, _slots("cuisine", "requested_slot"))
    assert tracker.applied_events() == [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("book", "request_restaurant"),
        ActionExecuted(form),
        ActiveLoop(form),
        SlotSet("requested_slot", "cuisine"),
        SlotSet("cuisine", "italian"),
    ]


def test_tracker_loop_unhappy_path_keeps_turns() -> None:
    form = "restaurant_form"
    events = [
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("book", "request_restaurant"),
        ActionExecuted(form),
        ActiveLoop(form),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("weather?", "chitchat"),
        ActionExecutionRejected(form),
        LoopInterrupted(True),
        ActionExecuted("utter_chitchat"),
        ActionExecuted(form),
    ]
    tracker = DialogueStateTracker.from_events("u", events, [])
    assert tracker.applied_events() == events
    # executing the form action again resets the interruption flag
    assert tracker.active_loop["is_interrupted"] is False
    assert tracker.active_loop["rejected"] is False


def test_tracker_reject_and_interrupt_set_loop_flags() -> None:
    tracker = DialogueStateTracker.from_events(
        "u", [ActionExecuted("f"), ActiveLoop("f"), ActionExecutionRejected("f"), LoopInterrupted(True)]
    )
    assert tracker.is_active_loop_rejected and tracker.is_active_loop_interrupted
    tracker.update(ActionExecuted("utter_x"))
    assert not tracker.is_active_loop_interrupted and tracker.is_active_loop_rejected
    tracker.update(ActionExecuted("f"))
    assert not tracker.is_active_loop_rejected
    tracker.update(ActiveLoop(None))
    assert tracker.active_loop == {} and tracker.active_loop_name is None
    tracker.change_loop_to("should_not_be_set")
    assert tracker.active_loop_name is None


def test_tracker_entities_added_and_featurization_apply_only_after_listen() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("berlin", "inform"),
            EntitiesAdded([{"entity": "city", "value": "Berlin"}]),
            DefinePrevUserUtteredFeaturization(True),
        ],
    )
    assert tracker.latest_message.entities == [{"entity": "city", "value": "Berlin"}]
    assert tracker.latest_message.use_text_for_featurization is True
    assert tracker.current_state()["latest_message"]["entities"] == [{"entity": "city", "value": "Berlin"}]
    # the event's stored parse data is unchanged
    assert tracker.latest_message.parse_data["entities"] == []
    tracker.update(ActionExecuted("utter_x"))
    tracker.update(EntitiesAdded([{"entity": "other", "value": 1}]))
    assert len(tracker.latest_message.entities) == 1


def test_tracker_get_last_event_for_and_last_executed_action_has() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("a", "greet"),
            ActionExecuted("utter_one"),
            ActionExecuted("utter_two"),
            ActionExecuted(ACTION_LISTEN_NAME),
        ],
    )
    assert tracker.get_last_event_for(ActionExecuted).action_name == ACTION_LISTEN_NAME
    last = tracker.get_last_event_for(ActionExecuted, action_names_to_exclude=[ACTION_LISTEN_NAME])
    assert last.action_name == "utter_two"
    assert tracker.get_last_event_for(ActionExecuted, [ACTION_LISTEN_NAME], skip=1).action_name == "utter_one"
    assert tracker.get_last_event_for((UserUttered, BotUttered)).text == "a"
    assert tracker.get_last_event_for(BotUttered) is None
    assert tracker.last_executed_action_has("utter_two")
    assert tracker.last_executed_action_has("utter_one", skip=1)
    assert not tracker.last_executed_action_has("utter_one")


def test_tracker_copy_and_travel_back_in_time() -> None:
    events = [
        ActionExecuted(ACTION_LISTEN_NAME, timestamp=1),
        _user("a", "greet", timestamp=2),
        SlotSet("s", 1, timestamp=3),
        SlotSet("s", 2, timestamp=4),
    ]
    tracker = DialogueStateTracker.from_events("u", events, _slots("s"))
    tracker.model_id = "m"
    past = tracker.travel_back_in_time(3)
    assert past.get_slot("s") == 1 and len(past.events) == 3
    duplicate = tracker.copy()
    assert duplicate == tracker
    assert duplicate is not tracker and duplicate.events is not tracker.events
    duplicate.update(SlotSet("s", 9))
    assert tracker.get_slot("s") == 2


def test_tracker_update_stamps_model_and_assistant_id() -> None:
    tracker = DialogueStateTracker("u", [])
    tracker.model_id = "model-1"
    tracker.assistant_id = "shop"
    event = SlotSet("x", 1)
    tracker.update(event)
    assert event.metadata == {"model_id": "model-1", "assistant_id": "shop"}


def test_tracker_update_with_events_refreshes_timestamps() -> None:
    tracker = DialogueStateTracker("u", _slots("a"))
    event = SlotSet("a", 1, timestamp=5)
    tracker.update_with_events([event], None)
    assert event.timestamp > 5
    tracker.update_with_events([SlotSet("a", 2, timestamp=7)], None, override_timestamp=False)
    assert tracker.events[-1].timestamp == 7


def test_tracker_max_event_history_keeps_latest_events() -> None:
    tracker = DialogueStateTracker("u", [], max_event_history=2)
    for i in range(5):
        tracker.update(ActionExecuted(f"a{i}"))
    assert [e.action_name for e in tracker.events] == ["a3", "a4"]


def test_tracker_generate_all_prior_trackers_yields_state_before_each_action() -> None:
    tracker = DialogueStateTracker.from_events(
        "u",
        [
            ActionExecuted(ACTION_LISTEN_NAME),
            _user("hi", "greet"),
            ActionExecuted("utter_greet", hide_rule_turn=True),
        ],
        is_rule_tracker=True,
    )
    # the same tracker object advances between yields (as in Rasa): read it at once
    priors = [(t.latest_action_name, hide, t.is_rule_tracker) for t, hide in tracker.generate_all_prior_trackers()]
    assert [(name, hide) for name, hide, _ in priors] == [
        (None, False),
        (ACTION_LISTEN_NAME, True),
        ("utter_greet", False),
    ]
    assert all(flag for _, _, flag in priors)


def test_tracker_past_states_delegates_to_domain() -> None:
    calls: list = []

    class FakeDomain:
        def states_for_tracker_history(self, tracker, **kwargs):  # noqa: ANN001, ANN003
            calls.append((tracker, kwargs))
            return [{"prev_action": {"action_name": "action_listen"}}]

    tracker = DialogueStateTracker("u", [])
    states = tracker.past_states(FakeDomain(), omit_unset_slots=True, rule_only_data={"x": 1})
    assert states == [{"prev_action": {"action_name": "action_listen"}}]
    assert calls == [
        (tracker, {"omit_unset_slots": True, "ignore_rule_only_turns": False, "rule_only_data": {"x": 1}})
    ]
    assert is_prev_action_listen_in_state(states[0])
    assert get_active_loop_name({"active_loop": {"name": "f"}}) == "f"
    assert get_active_loop_name({"active_loop": {"name": "should_not_be_set"}}) is None


def test_tracker_dialogue_round_trip() -> None:
    tracker = DialogueStateTracker.from_events(
        "u", [ActionExecuted(ACTION_LISTEN_NAME), _user("hi", "greet"), SlotSet("a", 1)], _slots("a")
    )
    dialogue = Dialogue.from_parameters(json.loads(json.dumps(tracker.as_dialogue().as_dict())))
    restored = DialogueStateTracker.from_dialogue(dialogue, _slots("a"))
    assert restored == tracker
    assert restored.get_slot("a") == 1
    assert restored.fingerprint() == tracker.fingerprint()


def test_tracker_freeze_current_state_is_hashable() -> None:
    state = {"user": {"intent": "greet", "entities": ("a",)}, "prev_action": {"action_name": "x"}}
    frozen = DialogueStateTracker.freeze_current_state(state)
    assert hash(frozen) == hash(DialogueStateTracker.freeze_current_state(dict(state)))


def test_tracker_with_domain_slot_classes_matches_rasa_dump() -> None:
    slots_module = pytest.importorskip("bot.shared.slots")
    Slot = slots_module.Slot
    slots = [
        Slot.from_dict("cuisine", {"type": "text", "mappings": [{"type": "from_entity", "entity": "cuisine"}]}),
        Slot.from_dict("num_people", {"type": "float", "mappings": [{"type": "custom"}]}),
        Slot.from_dict("outdoor_seating", {"type": "bool", "mappings": [{"type": "custom"}]}),
        Slot.from_dict("requested_slot", {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]}),
        Slot.from_dict("session_started_metadata", {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]}),
    ]
    dump = _load("formbot_rasa36.json")
    tracker = DialogueStateTracker.from_dict(dump["sender_id"], dump["events"], slots)
    assert tracker.current_state(EventVerbosity.ALL) == dump
    assert all(s.value is None for s in slots)  # the domain's slot objects stay untouched
    tracker.update(Restarted())
    assert tracker.current_slot_values()["cuisine"] is None
