"""Slots: Rasa's featurisation, coercion, mapping validation and errors."""
from __future__ import annotations

import pytest

from bot.shared.exceptions import InvalidDomain
from bot.shared.slots import (
    AnySlot,
    BooleanSlot,
    CategoricalSlot,
    FloatSlot,
    ListSlot,
    Slot,
    TextSlot,
    bool_from_any,
)
from bot.shared.yaml_io import read_yaml


class DoubleSlot(Slot):
    """Custom slot type used by dotted-path resolution."""

    type_name = "double"

    def _as_feature(self) -> list[float]:
        return [1.0, 1.0] if self.value else [0.0, 0.0]

    def _feature_dimensionality(self) -> int:
        return 2


def test_text_slot_features_is_set_only() -> None:
    slot = TextSlot("name", mappings=[])
    assert slot.as_feature() == [0.0]
    slot.value = "Ann"
    assert slot.as_feature() == [1.0]
    assert slot.feature_dimensionality() == 1


def test_slot_has_been_set_and_reset() -> None:
    slot = TextSlot("name", initial_value="x")
    assert not slot.has_been_set
    slot.value = None
    assert slot.has_been_set and slot.value is None
    slot.reset()
    assert slot.value == "x" and not slot.has_been_set


def test_bool_slot_features_and_coercion() -> None:
    slot = BooleanSlot("vip")
    assert slot.as_feature() == [0.0, 0.0]
    slot.value = "yes"
    assert slot.value is True
    assert slot.as_feature() == [1.0, 1.0]
    slot.value = False
    assert slot.as_feature() == [1.0, 0.0]
    assert bool_from_any("0") is False
    with pytest.raises(ValueError):
        bool_from_any("maybe")


def test_float_slot_scales_into_range() -> None:
    slot = FloatSlot("budget", min_value=0, max_value=200)
    assert slot.as_feature() == [0.0, 0.0]
    slot.value = "50"
    assert slot.value == 50.0
    assert slot.as_feature() == [1.0, 0.25]
    slot.value = 1000
    assert slot.as_feature() == [1.0, 1.0]
    assert slot.feature_dimensionality() == 2


def test_float_slot_invalid_range_raises() -> None:
    with pytest.raises(InvalidDomain, match="min"):
        FloatSlot("x", min_value=5, max_value=1)


def test_list_slot_wraps_single_value() -> None:
    slot = ListSlot("items")
    assert slot.as_feature() == [0.0]
    slot.value = "shoe"
    assert slot.value == ["shoe"]
    assert slot.as_feature() == [1.0]
    slot.value = []
    assert slot.as_feature() == [0.0]


def test_categorical_slot_one_hot_with_other() -> None:
    slot = CategoricalSlot("size", values=["S", "M"])
    slot.add_default_value()
    assert slot.values == ["S", "M", "__other__"]
    assert slot.as_feature() == [0.0, 0.0, 0.0]
    slot.value = "m"
    assert slot.value == "M"  # coerced to the domain's casing
    assert slot.as_feature() == [0.0, 1.0, 0.0]
    slot.value = "XXL"
    assert slot.as_feature() == [0.0, 0.0, 1.0]
    assert slot.persistence_info()["values"] == ["S", "M"]


def test_categorical_slot_unknown_value_without_other_is_unset() -> None:
    slot = CategoricalSlot("size", values=["S"])
    slot.value = "L"
    assert slot.as_feature() == [0.0]


def test_unfeaturized_slot_has_no_features() -> None:
    slot = TextSlot("t", influence_conversation=False)
    slot.value = "x"
    assert slot.as_feature() == []
    assert slot.feature_dimensionality() == 0


def test_any_slot_cannot_influence() -> None:
    with pytest.raises(InvalidDomain, match="AnySlot cannot be featurized"):
        AnySlot("meta", influence_conversation=True)
    slot = AnySlot("meta")
    slot.value = {"a": 1}
    assert slot.as_feature() == []


def test_slot_from_dict_builds_type_and_mappings() -> None:
    slot = Slot.from_dict(
        "size",
        {
            "type": "categorical",
            "values": ["S"],
            "initial_value": "S",
            "influence_conversation": False,
            "mappings": [{"type": "from_entity", "entity": "size", "role": "x"}],
        },
    )
    assert isinstance(slot, CategoricalSlot)
    assert slot.initial_value == "S" and slot.value == "S"
    assert slot.mappings == [{"type": "from_entity", "entity": "size", "role": "x"}]
    assert slot.persistence_info()["type"].endswith("CategoricalSlot")
    assert slot.as_domain_dict()["type"] == "categorical"


def test_slot_from_dict_accepts_rasa_module_paths() -> None:
    slot = Slot.from_dict("t", {"type": "rasa.shared.core.slots.TextSlot"})
    assert isinstance(slot, TextSlot)


def test_slot_from_dict_custom_type_by_dotted_path() -> None:
    slot = Slot.from_dict("d", {"type": f"{__name__}.DoubleSlot", "mappings": []})
    assert isinstance(slot, DoubleSlot)
    assert slot.feature_dimensionality() == 2


def test_slot_unknown_type_names_file_line_and_valid_types() -> None:
    data = read_yaml("slots:\n  color:\n    type: colour\n", "domain.yml")
    with pytest.raises(InvalidDomain) as e:
        Slot.from_dict("color", data["slots"]["color"], "domain.yml", 2)
    text = str(e.value)
    assert "domain.yml:3" in text  # the line of `type:`
    assert "colour" in text and "categorical" in text and "float" in text


def test_slot_missing_type_is_an_error() -> None:
    with pytest.raises(InvalidDomain, match="no `type`"):
        Slot.from_dict("x", {"mappings": []}, "d.yml", 4)


def test_slot_custom_type_not_importable() -> None:
    with pytest.raises(InvalidDomain, match="could not import"):
        Slot.from_dict("x", {"type": "nowhere.module.MySlot"}, "d.yml", 1)


def test_slot_unknown_option_is_reported() -> None:
    with pytest.raises(InvalidDomain, match="invalid option") as e:
        Slot.from_dict("x", {"type": "text", "colour": 1}, "d.yml", 7)
    assert "d.yml:7" in str(e.value)


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"type": "from_nowhere"}, "invalid slot mapping of type 'from_nowhere'"),
        ({"type": "from_entity"}, "needs a value for 'entity'"),
        ({"type": "from_intent", "intent": "x"}, "needs a value for 'value'"),
        ({"type": "from_text", "conditions": [{"requested_slot": "a"}]}, "active_loop"),
        ({"type": "from_text", "conditions": "form"}, "must be a list"),
    ],
)
def test_slot_mapping_validation_errors(mapping: dict, message: str) -> None:
    with pytest.raises(InvalidDomain, match=message):
        Slot.from_dict("x", {"type": "text", "mappings": [mapping]}, "d.yml", 3)


def test_slot_mapping_error_has_line_of_mapping() -> None:
    text = "x:\n  type: text\n  mappings:\n    - type: from_text\n    - type: bogus\n"
    data = read_yaml(text, "d.yml")
    with pytest.raises(InvalidDomain) as e:
        Slot.from_dict("x", data["x"], "d.yml", 1)
    assert "d.yml:5" in str(e.value)


def test_slot_all_mapping_types_accepted() -> None:
    mappings = [
        {"type": "from_entity", "entity": "e", "role": "r", "group": "g", "intent": "i", "not_intent": ["j"]},
        {"type": "from_text", "intent": "i"},
        {"type": "from_intent", "intent": "i", "value": True},
        {"type": "from_trigger_intent", "intent": "i", "value": 1},
        {"type": "custom", "action": "action_x"},
        {"type": "from_text", "conditions": [{"active_loop": "f", "requested_slot": "x"}, {"active_loop": None}]},
    ]
    slot = Slot.from_dict("x", {"type": "any", "mappings": mappings})
    assert len(slot.mappings) == 6
