"""Domain: loading, merging, validation with file/line, actions order, states."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.shared import constants as C
from bot.shared.domain import Domain, SessionConfig
from bot.shared.exceptions import ActionNotFound, InvalidDomain, YamlError
from bot.shared.slots import AnySlot, CategoricalSlot, TextSlot

DATA = Path(__file__).resolve().parent.parent / "data" / "domains"


@pytest.fixture(scope="module")
def shop() -> Domain:
    return Domain.load(DATA / "shop.yml")


def _error(text: str, filename: str = "domain.yml") -> str:
    with pytest.raises(InvalidDomain) as e:
        Domain.from_yaml(text, filename)
    return str(e.value)


# --- loading -----------------------------------------------------------------

def test_domain_intents_include_rasa_defaults(shop: Domain) -> None:
    assert shop.intents == sorted(shop.intents)
    for name in ["greet", "inform", "chitchat", "faq", *C.DEFAULT_INTENTS]:
        assert name in shop.intents


def test_domain_used_entities_follow_use_and_ignore(shop: Domain) -> None:
    props = shop.intent_properties
    assert props["greet"]["used_entities"] == ["city", "city#from", "city#to", "size"]
    assert props["inform"]["used_entities"] == ["city", "city#from", "city#to"]
    assert props["chitchat"]["used_entities"] == ["size"]
    assert props["restart"]["used_entities"] == ["city", "city#from", "city#to", "size"]


def test_domain_entities_roles_and_entity_states(shop: Domain) -> None:
    assert shop.entities == ["city", "size"]
    assert shop.roles == {"city": ["from", "to"]}
    assert shop.groups == {}
    assert shop.entity_states == ["city", "size", "city#from", "city#to"]


def test_domain_retrieval_intents(shop: Domain) -> None:
    assert shop.retrieval_intents == ["faq"]
    assert shop.is_retrieval_intent("faq") and not shop.is_retrieval_intent("greet")
    assert list(shop.retrieval_intent_responses) == ["utter_faq/shipping"]


def test_domain_slots_typed_with_defaults(shop: Domain) -> None:
    names = [s.name for s in shop.slots]
    assert names == ["city", "size", "vip", "budget", "notes", "requested_slot", "session_started_metadata"]
    size = shop.slots[1]
    assert isinstance(size, CategoricalSlot) and size.values == ["S", "M", "__other__"]
    requested = shop.slots[5]
    assert isinstance(requested, TextSlot) and not requested.influence_conversation
    assert isinstance(shop.slots[-1], AnySlot)
    assert shop.slots[2].initial_value is False


def test_domain_no_requested_slot_without_forms() -> None:
    d = Domain.from_yaml("intents: [greet]\n")
    assert [s.name for s in d.slots] == ["session_started_metadata"]


def test_domain_forms_normalised(shop: Domain) -> None:
    assert shop.form_names == ["address_form"]
    assert shop.forms == {"address_form": {"required_slots": ["city"], "ignored_intents": ["chitchat"]}}
    assert shop.required_slots_for_form("address_form") == ["city"]
    assert shop.required_slots_for_form("nope") == []
    assert shop.slot_mapping_for_form("address_form")["city"][0]["entity"] == "city"


def test_domain_action_order_is_rasas(shop: Domain) -> None:
    actions = shop.action_names_or_texts
    assert actions[: len(C.DEFAULT_ACTION_NAMES)] == C.DEFAULT_ACTION_NAMES
    assert actions[0] == "action_listen"
    assert actions[len(C.DEFAULT_ACTION_NAMES):] == [
        "action_check_vip",
        "action_lookup_order",
        "utter_ask_city",
        "utter_faq/shipping",
        "utter_greet",
        "address_form",
    ]
    assert shop.user_actions == actions[len(C.DEFAULT_ACTION_NAMES):-1]
    assert shop.index_for_action("utter_greet") == actions.index("utter_greet")
    assert shop.actions_which_explicitly_need_domain == ["action_lookup_order"]


def test_domain_user_action_overriding_default_is_not_duplicated() -> None:
    d = Domain.from_yaml("actions:\n  - action_default_fallback\n  - my_action\n")
    assert d.action_names_or_texts.count("action_default_fallback") == 1
    assert d.action_names_or_texts[-1] == "my_action"


def test_domain_index_for_unknown_action_raises(shop: Domain) -> None:
    with pytest.raises(ActionNotFound, match="utter_nope"):
        shop.index_for_action("utter_nope")


def test_domain_session_config(shop: Domain) -> None:
    assert shop.session_config == SessionConfig(30, False)
    default = Domain.from_yaml("intents: [greet]\n").session_config
    assert default == SessionConfig(60, True) and default.are_sessions_enabled()


def test_domain_empty() -> None:
    d = Domain.empty()
    assert d.is_empty()
    assert d.action_names_or_texts == C.DEFAULT_ACTION_NAMES
    assert set(d.intents) == set(C.DEFAULT_INTENTS)


def test_domain_load_folder_merges_files() -> None:
    d = Domain.load(DATA / "split")  # notes.yml (NLU) is skipped
    assert {"greet", "goodbye", "thank"} <= set(d.intents)
    assert d.responses["utter_greet"] == [{"text": "Hi from a"}]  # first file wins
    assert "utter_thank" in d.responses
    assert set(d.custom_actions) == {"action_a", "action_b"}
    assert d.session_config.session_expiration_time == 5
    assert d.duplicates.get("responses") == ["utter_greet"]


def test_domain_load_list_of_paths(tmp_path: Path) -> None:
    other = tmp_path / "extra.yml"
    other.write_text("intents: [extra]\n", encoding="utf-8")
    d = Domain.load([DATA / "shop.yml", other])
    assert "extra" in d.intents and "greet" in d.intents


def test_domain_load_missing_path_raises() -> None:
    with pytest.raises(InvalidDomain, match="not found"):
        Domain.load(DATA / "nope.yml")


def test_domain_merge_override_keeps_retrieval_flag(shop: Domain) -> None:
    extra = Domain.from_dict({"intents": [{"greet": {"is_retrieval_intent": True}}]})
    assert shop.merge(extra, override=True).is_retrieval_intent("greet")
    plain = Domain.from_dict({"intents": [{"greet": {"use_entities": []}}]})
    assert plain.merge(Domain.from_dict({"intents": ["greet", "bye"]})).intent_properties["greet"]["used_entities"] == []


# --- serialisation ------------------------------------------------------------

def test_domain_as_dict_is_rasa_json(shop: Domain) -> None:
    data = shop.as_dict()
    json.dumps(data)  # must be JSON-serialisable for the action server
    assert data["version"] == "3.1"
    assert data["forms"]["address_form"]["required_slots"] == ["city"]
    assert data["slots"]["city"]["mappings"][0]["type"] == "from_entity"
    assert data["slots"]["size"]["type"] == "categorical"
    assert data["session_config"] == {"session_expiration_time": 30, "carry_over_slots_to_new_session": False}
    assert {"action_lookup_order": {"send_domain": True}} in data["actions"]
    assert "greet" in data["intents"]
    assert "requested_slot" not in data["slots"]


def test_domain_persist_roundtrip(shop: Domain, tmp_path: Path) -> None:
    target = tmp_path / "model" / "domain.yml"
    shop.persist(target)
    again = Domain.load(target)
    assert again.fingerprint() == shop.fingerprint()
    assert again.action_names_or_texts == shop.action_names_or_texts
    assert again.intent_properties == shop.intent_properties


def test_domain_fingerprint_changes_with_content() -> None:
    a = Domain.from_yaml("intents: [greet]\n")
    b = Domain.from_yaml("intents: [greet, bye]\n")
    assert a.fingerprint() == Domain.from_yaml("intents: [greet]\n").fingerprint()
    assert a.fingerprint() != b.fingerprint()


# --- validation ---------------------------------------------------------------

def test_domain_unknown_slot_type_names_file_and_line() -> None:
    with pytest.raises(InvalidDomain) as e:
        Domain.load(DATA / "bad_slot_type.yml")
    assert "bad_slot_type.yml:4" in str(e.value)
    assert "colour" in str(e.value) and "categorical" in str(e.value)


def test_domain_form_with_undefined_slot() -> None:
    with pytest.raises(InvalidDomain) as e:
        Domain.load(DATA / "bad_form_slot.yml")
    assert "bad_form_slot.yml:11" in str(e.value)
    assert "missing_slot" in str(e.value)


def test_domain_duplicate_intent_in_file() -> None:
    msg = _error("intents:\n  - greet\n  - bye\n  - greet\n")
    assert "domain.yml:4" in msg and "greet" in msg


def test_domain_duplicate_action_in_file() -> None:
    msg = _error("actions:\n  - a\n  - a\n")
    assert "domain.yml:3" in msg and "Duplicate action" in msg


def test_domain_duplicate_response_key_is_yaml_error() -> None:
    with pytest.raises(YamlError) as e:
        Domain.from_yaml("responses:\n  utter_a:\n  - text: x\n  utter_a:\n  - text: y\n", "d.yml")
    assert "d.yml:4" in str(e.value)


def test_domain_response_without_content() -> None:
    msg = _error("responses:\n  utter_a:\n    - text: hi\n    - channel: web\n")
    assert "domain.yml:4" in msg and "no content" in msg


def test_domain_response_must_be_list_of_mappings() -> None:
    assert "must be a mapping" in _error("responses:\n  utter_a:\n    - hello\n")
    assert "non-empty list" in _error("responses:\n  utter_a:\n")


def _warning(text: str, caplog: pytest.LogCaptureFixture, filename: str = "domain.yml") -> str:
    """Rasa trains these domains: kefu loads them and warns with file:line (issue #16)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.shared.domain"):
        Domain.from_yaml(text, filename)
    return "\n".join(r.getMessage() for r in caplog.records)


def test_domain_response_condition_on_unknown_slot(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "responses:\n  utter_a:\n    - text: hi\n      condition:\n"
        "        - type: slot\n          name: ghost\n          value: 1\n"
    )
    msg = _warning(text, caplog)
    assert "domain.yml:3" in msg and "ghost" in msg


def test_domain_mapping_intent_unknown_warns(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "intents: [greet]\nslots:\n  a:\n    type: text\n    mappings:\n"
        "      - type: from_text\n        intent: order\n"
    )
    msg = _warning(text, caplog)
    assert "domain.yml:6" in msg and "'order'" in msg


def test_domain_mapping_condition_requested_slot_unknown_warns(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "slots:\n  a:\n    type: text\n    mappings:\n      - type: from_text\n"
        "        conditions:\n          - active_loop: f\n            requested_slot: zz\n"
        "forms:\n  f:\n    required_slots: [a]\n"
    )
    msg = _warning(text, caplog)
    assert "domain.yml:5" in msg and "zz" in msg


def test_domain_rasa2_form_mappings_rejected_with_fix() -> None:
    text = "slots:\n  a:\n    type: text\nforms:\n  f:\n    required_slots:\n      a:\n        - type: from_text\n"
    msg = _error(text)
    assert "domain.yml:6" in msg and "list" in msg


def test_domain_intent_with_colon_and_no_props() -> None:
    msg = _error("intents:\n  - greet:\n")
    assert "domain.yml:2" in msg and "remove the ':'" in msg


def test_domain_not_a_mapping() -> None:
    assert "must be a mapping" in _error("- greet\n")


def test_domain_unknown_top_level_key_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Domain.from_yaml("intents: [greet]\nintnets: [bye]\n", "d.yml")
    assert "intnets" in caplog.text and "d.yml:2" in caplog.text


def test_domain_empty_form_accepted() -> None:
    d = Domain.from_yaml("forms:\n  f: {}\n")
    assert d.forms == {"f": {"required_slots": []}}
    assert "requested_slot" in [s.name for s in d.slots]


# --- states ---------------------------------------------------------------------

def _tracker(domain: Domain, events: list) -> "object":
    from bot.shared.tracker import DialogueStateTracker

    tracker = DialogueStateTracker("u1", domain.slots)
    for event in events:
        tracker.update(event)
    return tracker


def test_domain_states_for_tracker_history(shop: Domain) -> None:
    from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered

    tracker = _tracker(
        shop,
        [
            ActionExecuted("action_listen"),
            UserUttered(
                "to Beijing",
                {"name": "inform", "confidence": 1.0},
                [{"entity": "city", "value": "Beijing", "role": "to"}, {"entity": "size", "value": "S"}],
            ),
            SlotSet("size", "S"),
            ActionExecuted("address_form"),
            ActiveLoop("address_form"),
            SlotSet("vip", True),
        ],
    )
    states = shop.states_for_tracker_history(tracker)
    assert states[0] == {"slots": {"vip": (1.0, 0.0)}}  # initial value False is featurised
    assert states[1] == {
        "user": {"text": "to Beijing", "intent": "inform", "entities": ("city", "city#to")},
        "prev_action": {"action_name": "action_listen"},
        "slots": {"size": (1.0, 0.0, 0.0), "vip": (1.0, 0.0)},
    }
    assert states[2] == {
        "user": {"text": "to Beijing", "intent": "inform", "entities": ("city", "city#to")},
        "prev_action": {"action_name": "address_form"},
        "slots": {"size": (1.0, 0.0, 0.0), "vip": (1.0, 1.0)},
        "active_loop": {"name": "address_form"},
    }
    assert shop.get_active_state(tracker) == states[-1]


def test_domain_states_omit_unset_slots(shop: Domain) -> None:
    from bot.shared.events import ActionExecuted

    tracker = _tracker(shop, [ActionExecuted("action_listen")])
    # vip has initial value False -> featurised, but it was never set
    assert shop.get_active_state(tracker)["slots"] == {"vip": (1.0, 0.0)}
    assert "slots" not in shop.get_active_state(tracker, omit_unset_slots=True)


def test_domain_states_rule_only_data_removed(shop: Domain) -> None:
    from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet

    tracker = _tracker(
        shop,
        [ActionExecuted("action_listen"), SlotSet("size", "M"), ActionExecuted("address_form"), ActiveLoop("address_form")],
    )
    states = shop.states_for_tracker_history(
        tracker,
        ignore_rule_only_turns=True,
        rule_only_data={"rule_only_slots": ["size"], "rule_only_loops": ["address_form"]},
    )
    assert all("size" not in s.get("slots", {}) for s in states)
    assert all("active_loop" not in s for s in states)


def test_domain_slots_for_entities(shop: Domain) -> None:
    events = shop.slots_for_entities(
        [{"entity": "size", "value": "M"}, {"entity": "city", "value": "Paris"}]
    )
    # `city`'s mapping is conditioned on an active loop, so only `size` is filled
    assert [(e.key, e.value) for e in events] == [("size", "M")]


def test_domain_section_readers_cover_every_known_section() -> None:
    from bot.shared.domain import _SECTION_READERS, KEY_TRAINING_DATA_FORMAT_VERSION, KNOWN_TOP_LEVEL_KEYS

    assert set(_SECTION_READERS) == KNOWN_TOP_LEVEL_KEYS - {KEY_TRAINING_DATA_FORMAT_VERSION}
