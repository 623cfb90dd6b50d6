"""Slots: the bot's memory, typed and featurised exactly as Rasa 3.6 does.

Policies see slots only through ``as_feature()``; the vectors below are the
ones Rasa builds, so states (and memorised rules/stories) line up with Rasa's.
Slot definitions come from the domain's ``slots:`` section; ``Slot.from_dict``
validates them (type, mappings, conditions) and names file and line on errors.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from bot.shared.constants import (
    DEFAULT_CATEGORICAL_SLOT_VALUE,
    MAPPING_CONDITIONS,
    MAPPING_TYPE,
    SLOT_MAPPINGS,
)
from bot.shared.exceptions import InvalidDomain

logger = logging.getLogger(__name__)

DOCS_URL_SLOTS = "https://rasa.com/docs/rasa/domain#slots"

# Slot mapping types (rasa/shared/core/slot_mappings.py::SlotMappingType).
FROM_ENTITY = "from_entity"
FROM_INTENT = "from_intent"
FROM_TRIGGER_INTENT = "from_trigger_intent"
FROM_TEXT = "from_text"
CUSTOM = "custom"

# mapping type -> (required keys, allowed keys)
_MAPPING_KEYS: dict[str, tuple[set[str], set[str]]] = {
    FROM_ENTITY: ({"entity"}, {"entity", "role", "group", "intent", "not_intent"}),
    FROM_INTENT: ({"value"}, {"value", "intent", "not_intent"}),
    FROM_TRIGGER_INTENT: ({"value"}, {"value", "intent", "not_intent"}),
    FROM_TEXT: (set(), {"intent", "not_intent"}),
    CUSTOM: (set(), {"action"}),
}
MAPPING_TYPES = tuple(_MAPPING_KEYS)
_COMMON_MAPPING_KEYS = {MAPPING_TYPE, MAPPING_CONDITIONS}
_CONDITION_KEYS = {"active_loop", "requested_slot"}


def _loc(filename: str | Path | None, line: int | None) -> tuple[str | None, int | None]:
    return (str(filename) if filename else None, line)


def _line(node: Any, key: Any = None, index: int | None = None, default: int | None = None) -> int | None:
    try:
        from bot.shared.yaml_io import line_of

        found = line_of(node, key=key, index=index)
    except Exception:  # pragma: no cover - plain dicts have no lines
        found = None
    return found if found is not None else default


def plain_data(data: Any) -> Any:
    """``to_plain`` plus ruamel scalar subclasses (ScalarInt, ScalarFloat ...) made
    built-in, so values compare, hash, JSON- and YAML-serialise like plain ones."""
    from bot.shared.yaml_io import to_plain

    def scalars(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: scalars(v) for k, v in x.items()}
        if isinstance(x, list):
            return [scalars(v) for v in x]
        if isinstance(x, bool) or x is None or type(x) in (int, float, str):
            return x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return float(x)
        if isinstance(x, str):
            return str(x)
        value = getattr(x, "value", None)  # TaggedScalar
        return str(value) if isinstance(value, str) else x

    return scalars(to_plain(data))


def bool_from_any(x: Any) -> bool:
    """Converts bool/float/int/str to bool or raises (Rasa's rules)."""
    if isinstance(x, bool):
        return x
    if isinstance(x, (float, int)):
        return x == 1.0
    if isinstance(x, str):
        if x.isnumeric():
            return float(x) == 1.0
        lowered = x.strip().lower()
        if lowered in ("true", "yes"):
            return True
        if lowered in ("false", "no"):
            return False
        raise ValueError("Cannot convert string to bool")
    raise TypeError("Cannot convert to bool")


def _as_name_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def validate_mappings(
    slot_name: str,
    mappings: Any,
    filename: str | Path | None = None,
    line: int | None = None,
) -> list[dict[str, Any]]:
    """Check a slot's ``mappings`` list (types, keys, conditions); returns plain dicts."""
    if mappings is None:
        return []
    if not isinstance(mappings, list):
        raise InvalidDomain(
            f"The mappings of slot '{slot_name}' must be a list, got {type(mappings).__name__}.",
            filename,
            _line(mappings, default=line),
            fix="Write `mappings:` followed by `- type: from_entity` style list items.",
        )
    result: list[dict[str, Any]] = []
    for i, mapping in enumerate(mappings):
        m_line = _line(mappings, index=i, default=line)
        if not isinstance(mapping, dict):
            raise InvalidDomain(
                f"Mapping #{i + 1} of slot '{slot_name}' is not a mapping (dictionary).",
                filename,
                m_line,
                fix="Each mapping needs at least a `type:` key, e.g. `- type: from_text`.",
            )
        m_type = mapping.get(MAPPING_TYPE)
        if m_type not in _MAPPING_KEYS:
            raise InvalidDomain(
                f"Slot '{slot_name}' uses an invalid slot mapping of type '{m_type}'.",
                filename,
                _line(mapping, key=MAPPING_TYPE, default=m_line),
                fix=f"Use one of: {', '.join(MAPPING_TYPES)}. See {DOCS_URL_SLOTS}",
            )
        required, allowed = _MAPPING_KEYS[m_type]
        for key in sorted(required):
            if mapping.get(key) is None:
                raise InvalidDomain(
                    f"Slot '{slot_name}': a '{m_type}' mapping needs a value for '{key}'.",
                    filename,
                    m_line,
                    fix=f"Add `{key}: ...` to this mapping.",
                )
        unknown = set(map(str, mapping)) - allowed - _COMMON_MAPPING_KEYS
        if unknown:
            logger.warning(
                "%s: slot '%s' mapping of type '%s' has unknown keys %s (ignored).",
                f"{filename}:{m_line}" if filename else "domain",
                slot_name,
                m_type,
                sorted(unknown),
            )
        conditions = mapping.get(MAPPING_CONDITIONS)
        if conditions is not None:
            _validate_conditions(slot_name, conditions, filename, m_line)
        result.append(plain_data(mapping))
    return result


def _validate_conditions(slot_name: str, conditions: Any, filename: Any, line: int | None) -> None:
    if not isinstance(conditions, list):
        raise InvalidDomain(
            f"The mapping conditions of slot '{slot_name}' must be a list.",
            filename,
            _line(conditions, default=line),
            fix="Write `conditions:` followed by `- active_loop: my_form` items.",
        )
    for j, condition in enumerate(conditions):
        c_line = _line(conditions, index=j, default=line)
        if not isinstance(condition, dict) or "active_loop" not in condition:
            raise InvalidDomain(
                f"A mapping condition of slot '{slot_name}' must be a mapping with an "
                f"'active_loop' key.",
                filename,
                c_line,
                fix="Use `- active_loop: <form name>` (optionally `requested_slot: <slot>`).",
            )
        unknown = set(map(str, condition)) - _CONDITION_KEYS
        if unknown:
            raise InvalidDomain(
                f"A mapping condition of slot '{slot_name}' has unknown keys {sorted(unknown)}.",
                filename,
                c_line,
                fix="Conditions accept only `active_loop` and `requested_slot`.",
            )


class Slot:
    """Key-value memory of a conversation (Rasa's ``Slot``)."""

    type_name: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        mappings: list[dict[str, Any]] | None = None,
        initial_value: Any = None,
        value_reset_delay: int | None = None,
        influence_conversation: bool = True,
        is_builtin: bool = False,
        shared_for_coexistence: bool = False,
    ) -> None:
        self.name = name
        self.mappings = list(mappings) if mappings else []
        self._value = initial_value
        self.initial_value = initial_value
        self._value_reset_delay = value_reset_delay
        self.influence_conversation = influence_conversation
        self._has_been_set = False
        self.is_builtin = is_builtin
        self.shared_for_coexistence = shared_for_coexistence
        # Where the slot was defined, for error messages (not persisted).
        self.source_file: str | None = None
        self.source_line: int | None = None

    # --- value ----------------------------------------------------------------
    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = self.coerce_value(value)
        self._has_been_set = True

    @property
    def has_been_set(self) -> bool:
        """True once anything was assigned (even ``None``), until ``reset()``."""
        return self._has_been_set

    def reset(self) -> None:
        """Back to the initial value, as after ``AllSlotsReset`` / a restart."""
        self._value = self.initial_value
        self._has_been_set = False

    def coerce_value(self, value: Any) -> Any:
        return value

    def is_valid_value(self, value: Any) -> bool:
        return True

    def has_same_coerced_value(self, other_value: Any) -> bool:
        return self.coerce_value(other_value) == self.value

    def value_reset_delay(self) -> int | None:
        return self._value_reset_delay

    # --- featurisation --------------------------------------------------------
    def feature_dimensionality(self) -> int:
        """Number of features this slot adds to a state (0 if it doesn't influence)."""
        if not self.influence_conversation:
            return 0
        return self._feature_dimensionality()

    def _feature_dimensionality(self) -> int:
        return 1

    def has_features(self) -> bool:
        return self.feature_dimensionality() != 0

    def as_feature(self) -> list[float]:
        if not self.influence_conversation:
            return []
        return self._as_feature()

    def _as_feature(self) -> list[float]:
        raise NotImplementedError(
            f"Slot '{self.name}' of type {type(self).__name__} must implement `_as_feature()` "
            f"to influence the conversation."
        )

    # --- serialisation --------------------------------------------------------
    def persistence_info(self) -> dict[str, Any]:
        """The slot's definition as Rasa persists it (type as module path)."""
        return {
            "type": module_path_of(self),
            "initial_value": self.initial_value,
            "influence_conversation": self.influence_conversation,
            "mappings": copy.deepcopy(self.mappings),
        }

    def as_domain_dict(self) -> dict[str, Any]:
        """The slot's definition as written in domain.yml (short type names)."""
        info = self.persistence_info()
        info["type"] = self.type_name if type(self) in _BUILTIN_TYPES.values() else module_path_of(self)
        return info

    def fingerprint(self) -> str:
        data = {"slot_name": self.name, "slot_value": self.value, **self.persistence_info()}
        return hashlib.md5(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.name}: {self.value})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self.name}: {self.value})>"

    # --- construction ---------------------------------------------------------
    @staticmethod
    def resolve_by_type(
        type_name: Any,
        filename: str | Path | None = None,
        line: int | None = None,
        slot_name: str | None = None,
    ) -> type["Slot"]:
        """Built-in type name (``text``, ``bool`` ...) or a dotted path to a Slot subclass."""
        if isinstance(type_name, str) and type_name in _BUILTIN_LOOKUP:
            return _BUILTIN_LOOKUP[type_name]
        valid = ", ".join(sorted(_BUILTIN_TYPES))
        what = f"Slot '{slot_name}' has" if slot_name else "Found"
        if not type_name:
            raise InvalidDomain(
                f"{what} no `type`.",
                filename,
                line,
                fix=f"Add `type:` with one of: {valid}, or a dotted path to your own Slot class.",
            )
        if isinstance(type_name, str) and "." in type_name:
            module_name, _, class_name = type_name.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as e:
                raise InvalidDomain(
                    f"{what} unknown type '{type_name}': could not import it ({e}).",
                    filename,
                    line,
                    fix=f"Use one of: {valid}, or fix the dotted path to your Slot class.",
                ) from e
            if not (isinstance(cls, type) and issubclass(cls, Slot)):
                raise InvalidDomain(
                    f"{what} type '{type_name}', which is not a subclass of bot.shared.slots.Slot.",
                    filename,
                    line,
                    fix="Subclass `Slot` (and implement `_as_feature`) for custom slot types.",
                )
            return cls
        raise InvalidDomain(
            f"{what} unknown type '{type_name}'.",
            filename,
            line,
            fix=f"Use one of: {valid}, or a dotted path to your own Slot class.",
        )

    @classmethod
    def from_dict(
        cls,
        name: str,
        definition: Any,
        filename: str | Path | None = None,
        line: int | None = None,
    ) -> "Slot":
        """Build a slot from its domain definition (``type``, ``mappings``, options)."""
        if definition is None:
            definition = {}
        if not isinstance(definition, dict):
            raise InvalidDomain(
                f"Slot '{name}' must be a mapping with at least a `type`, "
                f"got {type(definition).__name__}.",
                filename,
                line,
                fix="Write e.g. `name:` then indented `type: text` and `mappings: [...]`.",
            )
        type_line = _line(definition, key="type", default=line)
        slot_class = Slot.resolve_by_type(definition.get("type"), filename, type_line, name)
        mappings = validate_mappings(name, definition.get(SLOT_MAPPINGS), filename, line)
        kwargs = {str(k): plain_data(v) for k, v in definition.items() if k not in ("type", SLOT_MAPPINGS)}
        kwargs.pop("auto_fill", None)  # Rasa 2 key, meaningless in Rasa 3
        try:
            slot = slot_class(name, mappings=mappings, **kwargs)
        except TypeError as e:
            raise InvalidDomain(
                f"Slot '{name}' of type '{definition.get('type')}' has an invalid option: {e}.",
                filename,
                line,
                fix="Valid options: initial_value, influence_conversation, mappings"
                + (", values" if issubclass(slot_class, CategoricalSlot) else "")
                + (", min_value, max_value" if issubclass(slot_class, FloatSlot) else "")
                + ".",
            ) from e
        except InvalidDomain as e:
            if e.filename is None:
                raise InvalidDomain(e.message, filename, line, e.fix) from e
            raise
        slot.source_file, slot.source_line = _loc(filename, line)
        return slot


class FloatSlot(Slot):
    """A number; featurised as [is_set, value scaled into min..max]."""

    type_name = "float"

    def __init__(
        self,
        name: str,
        mappings: list[dict[str, Any]] | None = None,
        initial_value: float | None = None,
        value_reset_delay: int | None = None,
        max_value: float = 1.0,
        min_value: float = 0.0,
        influence_conversation: bool = True,
        is_builtin: bool = False,
        shared_for_coexistence: bool = False,
    ) -> None:
        super().__init__(
            name, mappings, initial_value, value_reset_delay, influence_conversation,
            is_builtin, shared_for_coexistence,
        )
        try:
            self.max_value = float(max_value)
            self.min_value = float(min_value)
        except (TypeError, ValueError) as e:
            raise InvalidDomain(
                f"Float slot '{name}' has a non-numeric min_value/max_value.",
                fix="Use numbers for `min_value` and `max_value`.",
            ) from e
        if self.min_value >= self.max_value:
            raise InvalidDomain(
                f"Float slot '{name}' created with an invalid range using min "
                f"({self.min_value}) and max ({self.max_value}) values.",
                fix="Make sure min_value is smaller than max_value.",
            )
        if initial_value is not None:
            try:
                inside = self.min_value <= float(initial_value) <= self.max_value
            except (TypeError, ValueError):
                inside = False
            if not inside:
                logger.warning(
                    "Float slot '%s' created with an initial value %s outside of the "
                    "configured min (%s) and max (%s) values.",
                    name, initial_value, self.min_value, self.max_value,
                )

    def _as_feature(self) -> list[float]:
        try:
            capped = max(self.min_value, min(self.max_value, float(self.value)))
            covered = abs(self.max_value - self.min_value) or 1
            return [1.0, (capped - self.min_value) / covered]
        except (TypeError, ValueError):
            return [0.0, 0.0]

    def _feature_dimensionality(self) -> int:
        return 2

    def coerce_value(self, value: Any) -> Any:
        try:
            return float(value)
        except (TypeError, ValueError):
            return value

    def is_valid_value(self, value: Any) -> bool:
        return value is None or isinstance(self.coerce_value(value), float)

    def persistence_info(self) -> dict[str, Any]:
        d = super().persistence_info()
        d["max_value"] = self.max_value
        d["min_value"] = self.min_value
        return d


class BooleanSlot(Slot):
    """A truth value; featurised as [is_set, value]."""

    type_name = "bool"

    def _as_feature(self) -> list[float]:
        try:
            if self.value is not None:
                return [1.0, float(bool_from_any(self.value))]
            return [0.0, 0.0]
        except (TypeError, ValueError):
            return [0.0, 0.0]

    def _feature_dimensionality(self) -> int:
        return 2

    def coerce_value(self, value: Any) -> Any:
        try:
            return bool_from_any(value)
        except (TypeError, ValueError):
            return value

    def is_valid_value(self, value: Any) -> bool:
        return value is None or isinstance(self.coerce_value(value), bool)


class TextSlot(Slot):
    """Free text; only 'is set' influences the conversation."""

    type_name = "text"

    def _as_feature(self) -> list[float]:
        return [1.0 if self.value is not None else 0.0]


class ListSlot(Slot):
    """A list; only 'is non-empty' influences the conversation."""

    type_name = "list"

    def _as_feature(self) -> list[float]:
        try:
            if self.value is not None and len(self.value) > 0:
                return [1.0]
            return [0.0]
        except (TypeError, ValueError):
            return [0.0]

    def coerce_value(self, value: Any) -> Any:
        if value and not isinstance(value, list):
            return [value]
        return value


class CategoricalSlot(Slot):
    """One of a fixed set of values; one-hot featurised (plus ``__other__``)."""

    type_name = "categorical"

    def __init__(
        self,
        name: str,
        mappings: list[dict[str, Any]] | None = None,
        values: list[Any] | None = None,
        initial_value: Any = None,
        value_reset_delay: int | None = None,
        influence_conversation: bool = True,
        is_builtin: bool = False,
        shared_for_coexistence: bool = False,
    ) -> None:
        super().__init__(
            name, mappings, initial_value, value_reset_delay, influence_conversation,
            is_builtin, shared_for_coexistence,
        )
        if values is not None and not isinstance(values, list):
            raise InvalidDomain(
                f"Categorical slot '{name}' needs `values` to be a list.",
                fix="Write `values:` followed by `- value` items.",
            )
        if values and None in values:
            logger.warning(
                "Categorical slot '%s' lists `null` as a value; it is ignored (null means "
                "'not set'). Quote it (\"null\") if you mean the string.",
                name,
            )
        self.values = [str(v) for v in values if v is not None] if values else []

    def add_default_value(self) -> None:
        """Append ``__other__`` so unknown values still featurise (domain does this)."""
        if DEFAULT_CATEGORICAL_SLOT_VALUE not in self.values:
            self.values.append(DEFAULT_CATEGORICAL_SLOT_VALUE)

    def persistence_info(self) -> dict[str, Any]:
        d = super().persistence_info()
        d["values"] = [v for v in self.values if v != DEFAULT_CATEGORICAL_SLOT_VALUE]
        return d

    def _as_feature(self) -> list[float]:
        r = [0.0] * self.feature_dimensionality()
        if self.value is None:
            return r
        try:
            for i, v in enumerate(self.values):
                if v.lower() == str(self.value).lower():
                    r[i] = 1.0
                    break
            else:
                if DEFAULT_CATEGORICAL_SLOT_VALUE in self.values:
                    r[self.values.index(DEFAULT_CATEGORICAL_SLOT_VALUE)] = 1.0
                else:
                    logger.warning(
                        "Categorical slot '%s' is set to a value ('%s') that is not "
                        "specified in the domain; it is featurised as unset.",
                        self.name, self.value,
                    )
        except (TypeError, ValueError):
            logger.exception("Failed to featurize categorical slot '%s'.", self.name)
        return r

    def _feature_dimensionality(self) -> int:
        return len(self.values)

    def coerce_value(self, value: Any) -> Any:
        if value and isinstance(value, str):
            if value in self.values:
                return value
            for configured in self.values:
                if value.casefold() == configured.casefold():
                    return configured
        return value

    def is_valid_value(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, str):
            return any(value.casefold() == v.casefold() for v in self.values)
        return str(value) in self.values


class AnySlot(Slot):
    """Stores anything; never featurised (subclass ``Slot`` to featurise)."""

    type_name = "any"

    def __init__(
        self,
        name: str,
        mappings: list[dict[str, Any]] | None = None,
        initial_value: Any = None,
        value_reset_delay: int | None = None,
        influence_conversation: bool = False,
        is_builtin: bool = False,
        shared_for_coexistence: bool = False,
    ) -> None:
        if influence_conversation:
            raise InvalidDomain(
                f"An AnySlot cannot be featurized (slot '{name}').",
                fix="Set `influence_conversation: false`, use another slot type, or "
                "implement a custom slot type by subclassing `Slot`.",
            )
        super().__init__(
            name, mappings, initial_value, value_reset_delay, influence_conversation,
            is_builtin, shared_for_coexistence,
        )

    def _as_feature(self) -> list[float]:
        return []

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, AnySlot):
            return NotImplemented
        return (
            self.name == other.name
            and self.initial_value == other.initial_value
            and self.value == other.value
        )

    __hash__ = Slot.__hash__


_BUILTIN_TYPES: dict[str, type[Slot]] = {
    TextSlot.type_name: TextSlot,
    BooleanSlot.type_name: BooleanSlot,
    CategoricalSlot.type_name: CategoricalSlot,
    FloatSlot.type_name: FloatSlot,
    ListSlot.type_name: ListSlot,
    AnySlot.type_name: AnySlot,
}
SLOT_TYPES = tuple(_BUILTIN_TYPES)


def module_path_of(slot: Slot) -> str:
    """Dotted path of a slot's class (what Rasa stores as persisted ``type``)."""
    cls = type(slot)
    return f"{cls.__module__}.{cls.__qualname__}"


# Rasa persists built-in types as module paths (rasa.shared.core.slots.TextSlot);
# accept those spellings, and our own, as aliases of the short names.
_BUILTIN_LOOKUP: dict[str, type[Slot]] = dict(_BUILTIN_TYPES)
for _cls in _BUILTIN_TYPES.values():
    _BUILTIN_LOOKUP[f"rasa.shared.core.slots.{_cls.__name__}"] = _cls
    _BUILTIN_LOOKUP[f"{__name__}.{_cls.__name__}"] = _cls
