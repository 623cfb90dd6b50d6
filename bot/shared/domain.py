"""The domain: the universe the bot acts in (Rasa 3.6 ``Domain``, simplified).

Reads ``domain.yml`` (or a folder of domain files, merged as Rasa merges them),
validates it with file/line errors, and exposes what NLU, policies, actions and
the rasa_sdk protocol need: intents and their entity filters, slots, forms,
responses, the ordered list of actions (whose indices policies predict over)
and the featurised dialogue states built from a tracker.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Union

from bot.shared import constants as C
from bot.shared.exceptions import ActionNotFound, InvalidDomain
from bot.shared.slots import AnySlot, CategoricalSlot, Slot, TextSlot, plain_data
from bot.shared.yaml_io import dump_yaml, line_of, read_yaml, read_yaml_file, yaml_files

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

DOCS_URL_DOMAINS = "https://rasa.com/docs/rasa/domain"
LATEST_TRAINING_DATA_FORMAT_VERSION = "3.1"
KEY_TRAINING_DATA_FORMAT_VERSION = "version"

CARRY_OVER_SLOTS_KEY = "carry_over_slots_to_new_session"
SESSION_EXPIRATION_TIME_KEY = "session_expiration_time"
SESSION_CONFIG_KEY = "session_config"
USED_ENTITIES_KEY = "used_entities"
USE_ENTITIES_KEY = "use_entities"
IGNORE_ENTITIES_KEY = "ignore_entities"
IS_RETRIEVAL_INTENT_KEY = "is_retrieval_intent"
ENTITY_ROLES_KEY = "roles"
ENTITY_GROUPS_KEY = "groups"
REQUIRED_SLOTS_KEY = "required_slots"
IGNORED_INTENTS = "ignored_intents"
RESPONSE_CONDITION = "condition"
CHANNEL = "channel"
SEND_DOMAIN = "send_domain"

KEY_SLOTS = "slots"
KEY_INTENTS = "intents"
KEY_ENTITIES = "entities"
KEY_RESPONSES = "responses"
KEY_ACTIONS = "actions"
KEY_FORMS = "forms"
KEY_E2E_ACTIONS = "e2e_actions"
KEY_CONFIG = "config"

ALL_DOMAIN_KEYS = [KEY_SLOTS, KEY_FORMS, KEY_ACTIONS, KEY_ENTITIES, KEY_INTENTS, KEY_RESPONSES, KEY_E2E_ACTIONS]
KNOWN_TOP_LEVEL_KEYS = set(ALL_DOMAIN_KEYS) | {KEY_TRAINING_DATA_FORMAT_VERSION, SESSION_CONFIG_KEY, KEY_CONFIG}

# What a response variation may carry; at least one of RESPONSE_CONTENT_KEYS.
RESPONSE_CONTENT_KEYS = ("text", "image", "custom", "buttons", "attachment", "quick_replies", "elements")
RESPONSE_KNOWN_KEYS = set(RESPONSE_CONTENT_KEYS) | {RESPONSE_CONDITION, CHANNEL, "metadata", "id", "response"}

# Knowledge-base slots Rasa adds when `action_query_knowledge_base` is used.
SLOT_LISTED_ITEMS = "knowledge_base_listed_objects"
SLOT_LAST_OBJECT = "knowledge_base_last_object"
SLOT_LAST_OBJECT_TYPE = "knowledge_base_last_object_type"

SubState = dict[str, Any]
State = dict[str, SubState]
Source = tuple[Union[str, None], Union[int, None]]


class SessionConfig(NamedTuple):
    """Conversation sessions: expiry (minutes, 0 = never) and slot carry-over."""

    session_expiration_time: float
    carry_over_slots: bool

    @staticmethod
    def default() -> "SessionConfig":
        return SessionConfig(
            C.DEFAULT_SESSION_EXPIRATION_TIME_IN_MINUTES, C.DEFAULT_CARRY_OVER_SLOTS_TO_NEW_SESSION
        )

    def are_sessions_enabled(self) -> bool:
        return self.session_expiration_time > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            SESSION_EXPIRATION_TIME_KEY: self.session_expiration_time,
            CARRY_OVER_SLOTS_KEY: self.carry_over_slots,
        }


# --------------------------------------------------------------------------- #
# Reading one domain file: shape checks with lines, plain data + source lines
# --------------------------------------------------------------------------- #


def _name_of(item: Any) -> str:
    """Name of a list entry that is either ``name`` or ``{name: props}``."""
    if isinstance(item, dict):
        return str(next(iter(item)))
    return str(item)


class _Part(NamedTuple):
    data: dict[str, Any]
    sources: dict[tuple, Source]


class _PartReader:
    """One domain document being read: its sections, file name and the lines found so far."""

    def __init__(self, raw: dict[str, Any], filename: str | None) -> None:
        self.raw = raw
        self.filename = filename
        self.sources: dict[tuple, Source] = {}

    def loc(self, node: Any, key: Any = None, index: int | None = None) -> Source:
        return (self.filename, line_of(node, key=key, index=index))

    def err(self, msg: str, where: Source, fix: str | None = None) -> InvalidDomain:
        return InvalidDomain(msg, where[0], where[1], fix)

    def section(self, key: str, kind: type) -> Any:
        """The section's value (empty when absent), or an error naming its line and wrong type."""
        value = self.raw.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise self.err(
                f"The `{key}` section must be a {'list' if kind is list else 'mapping'}, "
                f"got {type(value).__name__}.",
                self.loc(self.raw, key=key),
                fix=f"See {DOCS_URL_DOMAINS} for the format of `{key}`.",
            )
        return value


def _read_part(raw: Any, filename: str | None) -> _Part:
    """Validate one domain document's shape and remember where things are."""
    if raw is None:
        return _Part({}, {})
    if not isinstance(raw, dict):
        raise InvalidDomain(
            f"A domain file must be a mapping of sections (intents, slots, ...), "
            f"got {type(raw).__name__}.",
            filename,
            line_of(raw),
            fix=f"Start the file with `version: \"{LATEST_TRAINING_DATA_FORMAT_VERSION}\"` "
            f"and sections like `intents:`.",
        )
    ctx = _PartReader(raw, filename)
    for key in raw:
        if str(key) not in KNOWN_TOP_LEVEL_KEYS:
            logger.warning(
                "%s: unknown top-level key '%s' in the domain is ignored (known keys: %s).",
                _fmt(ctx.loc(raw, key=key)), key, ", ".join(sorted(KNOWN_TOP_LEVEL_KEYS)),
            )
    _check_version(raw, filename)
    for read_section in _SECTION_READERS.values():  # in this order: the first error wins
        read_section(ctx)
    data = plain_data(raw)
    data.pop("duplicates", None)
    return _Part(data, ctx.sources)


def _read_intents(ctx: _PartReader) -> None:
    """Names (or `name: {use_entities, ...}`), unique."""
    intents = ctx.section(KEY_INTENTS, list)
    seen: dict[str, Source] = {}
    for i, intent in enumerate(intents):
        where = ctx.loc(intents, index=i)
        if isinstance(intent, dict):
            if len(intent) != 1:
                raise ctx.err(
                    "Each intent entry must be a name or a single `name: {properties}` mapping.",
                    where,
                    fix="Put each intent on its own `- ` line.",
                )
            name, props = next(iter(intent.items()))
            if not isinstance(props, dict):
                raise ctx.err(
                    f"The intent '{name}' cannot have value `{props}`.",
                    where,
                    fix="If you placed a ':' after the intent's name without properties, "
                    "remove the ':'.",
                )
            unknown = set(map(str, props)) - {USE_ENTITIES_KEY, IGNORE_ENTITIES_KEY, IS_RETRIEVAL_INTENT_KEY, "triggers"}
            if unknown:
                logger.warning("%s: intent '%s' has unknown properties %s (ignored).", _fmt(where), name, sorted(unknown))
        elif isinstance(intent, (str, int, float, bool)) and intent is not None:
            name = str(intent)
        else:
            raise ctx.err(f"Invalid intent entry `{intent}`.", where, fix="List intent names as strings.")
        name = str(name)
        if name in seen:
            raise ctx.err(
                f"Intents are not unique! Found intent '{name}' more than once "
                f"(first at line {seen[name][1]}).",
                where,
                fix="Rename or remove the duplicate intent.",
            )
        seen[name] = where
        ctx.sources[(KEY_INTENTS, name)] = where


def _read_entities(ctx: _PartReader) -> None:
    """Names (or `name: {roles, groups}`), unique."""
    entities = ctx.section(KEY_ENTITIES, list)
    seen: dict[str, Source] = {}
    for i, entity in enumerate(entities):
        where = ctx.loc(entities, index=i)
        if isinstance(entity, dict):
            if len(entity) != 1:
                raise ctx.err("Each entity entry must be a name or a single `name: {roles/groups}` mapping.", where)
            name, props = next(iter(entity.items()))
            if not isinstance(props, dict):
                raise ctx.err(
                    f"The entity '{name}' cannot have value `{props}`.",
                    where,
                    fix="If you placed a ':' after the entity's name without roles/groups, "
                    "remove the ':'.",
                )
            for sub in (ENTITY_ROLES_KEY, ENTITY_GROUPS_KEY):
                if sub in props and not isinstance(props[sub], list):
                    raise ctx.err(f"The {sub} of entity '{name}' must be a list.", where)
        elif isinstance(entity, str):
            name = entity
        else:
            raise ctx.err(
                f"Invalid domain. Entity is invalid, type of entity '{entity}' not supported: "
                f"'{type(entity).__name__}'.",
                where,
            )
        name = str(name)
        if name in seen:
            raise ctx.err(f"Duplicate entity '{name}' in the domain.", where, fix="Remove the duplicate entity.")
        seen[name] = where
        ctx.sources[(KEY_ENTITIES, name)] = where


def _read_slots(ctx: _PartReader) -> None:
    """Each slot validated by ``Slot.from_dict``; mapping lines remembered."""
    slots = ctx.section(KEY_SLOTS, dict)
    for name, definition in slots.items():
        where = ctx.loc(slots, key=name)
        ctx.sources[(KEY_SLOTS, str(name))] = where
        Slot.from_dict(str(name), definition, ctx.filename, where[1])  # validates type + mappings
        mappings = definition.get(C.SLOT_MAPPINGS) if isinstance(definition, dict) else None
        if isinstance(mappings, list):
            for j, _ in enumerate(mappings):
                ctx.sources[(KEY_SLOTS, str(name), C.SLOT_MAPPINGS, j)] = ctx.loc(mappings, index=j)


def _read_forms(ctx: _PartReader) -> None:
    """`required_slots` lists (Rasa 3), optional `ignored_intents`."""
    forms = ctx.section(KEY_FORMS, dict)
    for name, form in forms.items():
        where = ctx.loc(forms, key=name)
        ctx.sources[(KEY_FORMS, str(name))] = where
        if form is None:
            continue
        if not isinstance(form, dict):
            raise ctx.err(
                f"The contents of form '{name}' must be a mapping, got {type(form).__name__}.",
                where,
                fix="Write `required_slots:` followed by a list of slot names.",
            )
        if not form:
            continue  # `my_form: {}`: a form without slots (Rasa accepts it)
        if REQUIRED_SLOTS_KEY not in form:
            raise ctx.err(
                f"The form '{name}' has no `{REQUIRED_SLOTS_KEY}` key.",
                where,
                fix=f"List the slots the form fills under `{REQUIRED_SLOTS_KEY}:` "
                "(slot mappings belong in the `slots:` section since Rasa 3).",
            )
        required = form.get(REQUIRED_SLOTS_KEY) or []
        if not isinstance(required, list):
            raise ctx.err(
                f"The slots for form '{name}' were specified as '{type(required).__name__}'. "
                f"They need to be a list of slot names.",
                ctx.loc(form, key=REQUIRED_SLOTS_KEY),
                fix="Rasa 3 format: `required_slots: [slot_a, slot_b]`; move slot mappings "
                "to the `slots:` section.",
            )
        for j, slot_name in enumerate(required):
            if not isinstance(slot_name, str):
                raise ctx.err(
                    f"Required slot #{j + 1} of form '{name}' must be a slot name.",
                    ctx.loc(required, index=j),
                )
            ctx.sources[(KEY_FORMS, str(name), REQUIRED_SLOTS_KEY, slot_name)] = ctx.loc(required, index=j)
        ignored = form.get(IGNORED_INTENTS)
        if ignored is not None and not isinstance(ignored, (list, str)):
            raise ctx.err(f"`{IGNORED_INTENTS}` of form '{name}' must be an intent or a list.", ctx.loc(form, key=IGNORED_INTENTS))
        unknown = set(map(str, form)) - {REQUIRED_SLOTS_KEY, IGNORED_INTENTS}
        if unknown:
            logger.warning("%s: form '%s' has unknown keys %s (ignored).", _fmt(where), name, sorted(unknown))


def _read_responses(ctx: _PartReader) -> None:
    """Non-empty lists of variations, each checked."""
    responses = ctx.section(KEY_RESPONSES, dict)
    for name, variations in responses.items():
        where = ctx.loc(responses, key=name)
        ctx.sources[(KEY_RESPONSES, str(name))] = where
        if not isinstance(variations, list) or not variations:
            raise ctx.err(
                f"Response '{name}' must be a non-empty list of variations.",
                where,
                fix=f"Write `{name}:` followed by `- text: \"...\"`.",
            )
        for j, variation in enumerate(variations):
            v_where = ctx.loc(variations, index=j)
            ctx.sources[(KEY_RESPONSES, str(name), j)] = v_where
            _check_variation(str(name), variation, v_where)


def _read_actions(ctx: _PartReader) -> None:
    """Names (or `name: {send_domain: ...}`), unique."""
    actions = ctx.section(KEY_ACTIONS, list)
    seen: dict[str, Source] = {}
    for i, action in enumerate(actions):
        where = ctx.loc(actions, index=i)
        if isinstance(action, dict):
            if len(action) != 1:
                raise ctx.err("Each action entry must be a name or a single `name: {send_domain: ...}`.", where)
            name, props = next(iter(action.items()))
            if props is not None and not isinstance(props, dict):
                raise ctx.err(f"The properties of action '{name}' must be a mapping.", where)
        elif isinstance(action, str):
            name = action
        else:
            raise ctx.err(f"Invalid action entry `{action}`.", where, fix="List action names as strings.")
        name = str(name)
        if name in seen:
            raise ctx.err(
                f"Duplicate action '{name}' in the domain (first at line {seen[name][1]}).",
                where,
                fix="Remove the duplicate action.",
            )
        seen[name] = where
        ctx.sources[(KEY_ACTIONS, name)] = where


def _read_e2e_actions(ctx: _PartReader) -> None:
    """Bot texts of end-to-end stories."""
    e2e = ctx.section(KEY_E2E_ACTIONS, list)
    if any(not isinstance(a, str) for a in e2e):
        raise ctx.err("`e2e_actions` must be a list of texts.", ctx.loc(ctx.raw, key=KEY_E2E_ACTIONS))


def _read_session_config(ctx: _PartReader) -> None:
    """Expiry in minutes (>= 0) and slot carry-over (bool)."""
    session = ctx.raw.get(SESSION_CONFIG_KEY)
    if session is not None:
        where = ctx.loc(ctx.raw, key=SESSION_CONFIG_KEY)
        if not isinstance(session, dict):
            raise ctx.err("`session_config` must be a mapping.", where)
        expiry = session.get(SESSION_EXPIRATION_TIME_KEY)
        if expiry is not None and (isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry < 0):
            raise ctx.err(
                f"`{SESSION_EXPIRATION_TIME_KEY}` must be a number of minutes >= 0, got `{expiry}`.",
                ctx.loc(session, key=SESSION_EXPIRATION_TIME_KEY),
                fix="Use e.g. `session_expiration_time: 60` (0 disables sessions).",
            )
        carry = session.get(CARRY_OVER_SLOTS_KEY)
        if carry is not None and not isinstance(carry, bool):
            raise ctx.err(
                f"`{CARRY_OVER_SLOTS_KEY}` must be true or false.",
                ctx.loc(session, key=CARRY_OVER_SLOTS_KEY),
            )
        ctx.sources[(SESSION_CONFIG_KEY,)] = where


def _read_config(ctx: _PartReader) -> None:
    """A mapping (Rasa's `store_entities_as_slots`), not checked further."""
    config = ctx.raw.get(KEY_CONFIG)
    if config is not None and not isinstance(config, dict):
        raise ctx.err("`config` must be a mapping.", ctx.loc(ctx.raw, key=KEY_CONFIG))


_SECTION_READERS: dict[str, Callable[[_PartReader], None]] = {
    KEY_INTENTS: _read_intents,
    KEY_ENTITIES: _read_entities,
    KEY_SLOTS: _read_slots,
    KEY_FORMS: _read_forms,
    KEY_RESPONSES: _read_responses,
    KEY_ACTIONS: _read_actions,
    KEY_E2E_ACTIONS: _read_e2e_actions,
    SESSION_CONFIG_KEY: _read_session_config,
    KEY_CONFIG: _read_config,
}
"""Each top-level section's checks (the version is checked before them)."""


def _check_variation(name: str, variation: Any, where: Source) -> None:
    def err(msg: str, fix: str | None = None) -> InvalidDomain:
        return InvalidDomain(msg, where[0], where[1], fix)

    if not isinstance(variation, dict):
        raise err(
            f"A variation of response '{name}' must be a mapping, got `{variation}`.",
            fix="Write variations as `- text: \"...\"`.",
        )
    if not any(variation.get(k) not in (None, "", [], {}) for k in RESPONSE_CONTENT_KEYS):
        raise err(
            f"A variation of response '{name}' has no content.",
            fix=f"Give it at least one of: {', '.join(RESPONSE_CONTENT_KEYS)}.",
        )
    text = variation.get("text")
    if text is not None and not isinstance(text, (str, int, float)):
        raise err(f"The `text` of response '{name}' must be a string.")
    buttons = variation.get("buttons")
    if buttons is not None:
        if not isinstance(buttons, list) or any(not isinstance(b, dict) for b in buttons):
            raise err(
                f"The `buttons` of response '{name}' must be a list of mappings.",
                fix="Write buttons as `- title: \"Yes\"` with `payload: \"/affirm\"`.",
            )
        for b in buttons:
            if "title" not in b:
                raise err(f"A button of response '{name}' has no `title`.")
    custom = variation.get("custom")
    if custom is not None and not isinstance(custom, dict):
        raise err(f"The `custom` payload of response '{name}' must be a mapping.")
    channel = variation.get(CHANNEL)
    if channel is not None and not isinstance(channel, str):
        raise err(f"The `channel` of response '{name}' must be a channel name.")
    condition = variation.get(RESPONSE_CONDITION)
    if condition is not None:
        if not isinstance(condition, list):
            raise err(
                f"The `condition` of response '{name}' must be a list.",
                fix="Write `condition:` then `- type: slot` / `name: ...` / `value: ...`.",
            )
        for c in condition:
            if not isinstance(c, dict) or c.get("type") != "slot" or "name" not in c or "value" not in c:
                raise err(
                    f"Each condition of response '{name}' needs `type: slot`, `name` and `value`.",
                    fix="Write `- type: slot`, `name: <slot>`, `value: <value>`.",
                )
    unknown = set(map(str, variation)) - RESPONSE_KNOWN_KEYS
    if unknown:
        logger.warning("%s: response '%s' has unknown keys %s.", _fmt(where), name, sorted(unknown))


def _check_version(raw: dict, filename: str | None) -> None:
    if KEY_TRAINING_DATA_FORMAT_VERSION not in raw:
        return
    version = raw[KEY_TRAINING_DATA_FORMAT_VERSION]
    where = (filename, line_of(raw, key=KEY_TRAINING_DATA_FORMAT_VERSION))
    if not isinstance(version, str):
        logger.warning(
            "%s: `version` should be a string, e.g. version: \"%s\".",
            _fmt(where), LATEST_TRAINING_DATA_FORMAT_VERSION,
        )
        return
    try:
        parsed = tuple(int(p) for p in version.split("."))
    except ValueError:
        logger.warning("%s: unrecognised domain version '%s'.", _fmt(where), version)
        return
    if parsed > tuple(int(p) for p in LATEST_TRAINING_DATA_FORMAT_VERSION.split(".")):
        logger.warning(
            "%s: domain version '%s' is newer than the latest supported '%s'; reading it anyway.",
            _fmt(where), version, LATEST_TRAINING_DATA_FORMAT_VERSION,
        )


def _fmt(where: Source) -> str:
    if not where[0]:
        return "domain"
    return f"{where[0]}:{where[1]}" if where[1] else str(where[0])


# --------------------------------------------------------------------------- #
# Merging domain dicts (several files, or Domain.merge)
# --------------------------------------------------------------------------- #


def _merge_named_lists(first: list, second: list, override: bool) -> tuple[list, list[str]]:
    """Merge lists of ``name`` / ``{name: props}`` keeping first-seen order."""
    merged: dict[str, Any] = {}
    for item in first:
        merged[_name_of(item)] = item
    dupes = []
    for item in second:
        key = _name_of(item)
        if key in merged:
            dupes.append(key)
            if override or (not isinstance(merged[key], dict) and isinstance(item, dict)):
                # a bare name never hides properties given elsewhere
                merged[key] = item
        else:
            merged[key] = item
    return list(merged.values()), dupes


def _merge_mappings(first: dict, second: dict, override: bool) -> tuple[dict, list[str]]:
    merged = dict(first)
    dupes = []
    for key, value in second.items():
        if key in merged:
            if merged[key] != value:
                dupes.append(str(key))
            if override:
                merged[key] = value
        else:
            merged[key] = value
    return merged, dupes


def merge_domain_dicts(
    combined: dict[str, Any], new: dict[str, Any], override: bool = False
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Rasa's merge: lists are unioned, mappings keep the first definition
    (``override``: the new one); returns the merged dict and the duplicates."""
    if not new:
        return combined, {}
    if not combined:
        return copy.deepcopy(new), {}
    result = copy.deepcopy(combined)
    new = copy.deepcopy(new)
    duplicates: dict[str, list[str]] = {}

    default_session = SessionConfig.default().as_dict()
    new_session = new.get(SESSION_CONFIG_KEY)
    if new_session and (
        override or result.get(SESSION_CONFIG_KEY) in (None, {}, default_session)
    ) and new_session != default_session:
        result[SESSION_CONFIG_KEY] = new_session
    if override and new.get(KEY_CONFIG):
        result.setdefault(KEY_CONFIG, {}).update(new[KEY_CONFIG])
    elif KEY_CONFIG not in result and new.get(KEY_CONFIG):
        result[KEY_CONFIG] = new[KEY_CONFIG]

    # a form listed as a custom action in a later file stays a form
    forms = result.get(KEY_FORMS) or {}
    if new.get(KEY_ACTIONS):
        new[KEY_ACTIONS] = [a for a in new[KEY_ACTIONS] if _name_of(a) not in forms]

    for key in (KEY_INTENTS, KEY_ENTITIES, KEY_ACTIONS):
        if result.get(key) or new.get(key):
            result[key], d = _merge_named_lists(result.get(key) or [], new.get(key) or [], override)
            if d:
                duplicates[key] = d
    if result.get(KEY_E2E_ACTIONS) or new.get(KEY_E2E_ACTIONS):
        seen = list(result.get(KEY_E2E_ACTIONS) or [])
        seen += [a for a in new.get(KEY_E2E_ACTIONS) or [] if a not in seen]
        result[KEY_E2E_ACTIONS] = seen
    for key in (KEY_FORMS, KEY_RESPONSES, KEY_SLOTS):
        if result.get(key) or new.get(key):
            result[key], d = _merge_mappings(result.get(key) or {}, new.get(key) or {}, override)
            if d:
                duplicates[key] = d
    return result, duplicates


# --------------------------------------------------------------------------- #
# The Domain
# --------------------------------------------------------------------------- #


class Domain:
    """Intents, entities, slots, forms, responses and actions of one bot."""

    def __init__(
        self,
        intents: list[str | dict[str, Any]],
        entities: list[str | dict[str, Any]],
        slots: list[Slot],
        responses: dict[str, list[dict[str, Any]]],
        action_names: list[str | dict[str, Any]],
        forms: dict[str, Any],
        data: dict[str, Any] | None = None,
        action_texts: list[str] | None = None,
        store_entities_as_slots: bool = True,
        session_config: SessionConfig = SessionConfig.default(),
        sources: dict[tuple, Source] | None = None,
        duplicates: dict[str, list[str]] | None = None,
    ) -> None:
        self._sources: dict[tuple, Source] = dict(sources or {})
        self.duplicates = duplicates or {}
        self.entities, self.roles, self.groups = self.collect_entity_properties(entities)
        self.intent_properties = self.collect_intent_properties(
            intents, self.entities, self.roles, self.groups
        )
        self.overridden_default_intents = sorted(
            {_name_of(i) for i in intents} & set(C.DEFAULT_INTENTS)
        )
        self.forms: dict[str, dict[str, Any]] = self._initialize_forms(forms)
        self.form_names: list[str] = list(self.forms)
        self.responses: dict[str, list[dict[str, Any]]] = responses
        self.action_texts: list[str] = list(action_texts or [])
        self.session_config = session_config
        self.store_entities_as_slots = store_entities_as_slots

        custom_actions = [_name_of(a) for a in action_names]
        self._custom_actions = custom_actions
        self._actions_which_explicitly_need_domain = [
            _name_of(a)
            for a in action_names
            if isinstance(a, dict) and (next(iter(a.values())) or {}).get(SEND_DOMAIN)
        ]
        # custom actions and utterance actions (responses)
        self.user_actions: list[str] = custom_actions + [
            r for r in sorted(responses) if r not in custom_actions
        ]
        # default actions first (action_listen must stay at index 0), then
        # user actions, forms and end-to-end bot texts
        self.action_names_or_texts: list[str] = (
            list(C.DEFAULT_ACTION_NAMES)
            + [a for a in self.user_actions if a not in C.DEFAULT_ACTION_NAMES]
            + [f for f in self.form_names if f not in custom_actions]
            + self.action_texts
        )

        self._user_slots = list(slots)
        self.slots: list[Slot] = list(slots)
        self._add_default_slots()
        self._data = self._build_data(
            data, intents, entities, slots, responses, action_names, forms,
            session_config, store_entities_as_slots,
        )
        self._check_domain_sanity()

    # ------------------------------------------------------------- loading --
    @classmethod
    def empty(cls) -> "Domain":
        return cls([], [], [], {}, [], {})

    @classmethod
    def load(cls, paths: str | Path | Iterable[str | Path]) -> "Domain":
        """Load a domain from a file, a folder of files, or several of those."""
        if not paths:
            raise InvalidDomain(
                "No domain file was specified.", fix="Pass the path of domain.yml or a domain folder."
            )
        if isinstance(paths, (str, Path)):
            paths = [paths]
        parts: list[_Part] = []
        for path in paths:
            parts.extend(cls._parts_from_path(Path(path)))
        return cls._from_parts(parts)

    @classmethod
    def from_path(cls, path: str | Path) -> "Domain":
        return cls.load(path)

    @classmethod
    def from_file(cls, path: str | Path) -> "Domain":
        return cls.load(path)

    @classmethod
    def from_directory(cls, path: str | Path) -> "Domain":
        return cls.load(path)

    @classmethod
    def _parts_from_path(cls, path: Path) -> list[_Part]:
        if path.is_file():
            return [_read_part(read_yaml_file(path), str(path))]
        if path.is_dir():
            parts = []
            for file in yaml_files(path):
                raw = read_yaml_file(file)
                if isinstance(raw, dict) and any(k in raw for k in ALL_DOMAIN_KEYS):
                    parts.append(_read_part(raw, str(file)))
                else:
                    logger.debug("Skipping %s: not a domain file.", file)
            return parts
        raise InvalidDomain(
            "Failed to load the domain: file or folder not found.",
            path,
            fix="Check the path of domain.yml (or the domain/ folder).",
        )

    @classmethod
    def from_yaml(cls, yaml: str, original_filename: str | Path = "") -> "Domain":
        """Parse and validate domain YAML text."""
        name = str(original_filename) if original_filename else "<string>"
        raw = read_yaml(yaml, name)
        return cls._from_parts([_read_part(raw, str(original_filename) or None)])

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, filename: str | Path | None = None) -> "Domain":
        """Build a domain from a (possibly ruamel, line-carrying) dict."""
        return cls._from_parts([_read_part(data or {}, str(filename) if filename else None)])

    @classmethod
    def _from_parts(cls, parts: list[_Part]) -> "Domain":
        data: dict[str, Any] = {}
        sources: dict[tuple, Source] = {}
        duplicates: dict[str, list[str]] = {}
        for part in parts:
            data, dupes = merge_domain_dicts(data, part.data)
            for key, names in dupes.items():
                for name in names:
                    first = sources.get((key, name))
                    again = part.sources.get((key, name))
                    if key == KEY_INTENTS:
                        continue  # repeating an intent in several files is harmless
                    logger.warning(
                        "%s: '%s' in `%s` is also defined at %s; the first definition is used.",
                        _fmt(again or (None, None)), name, key, _fmt(first or (None, None)),
                    )
                duplicates.setdefault(key, []).extend(n for n in names if n not in duplicates.get(key, []))
            for key, where in part.sources.items():
                sources.setdefault(key, where)
        return cls._build(data, sources, duplicates)

    @classmethod
    def _build(
        cls,
        data: dict[str, Any],
        sources: dict[tuple, Source],
        duplicates: dict[str, list[str]] | None = None,
    ) -> "Domain":
        slots = []
        for name, definition in (data.get(KEY_SLOTS) or {}).items():
            where = sources.get((KEY_SLOTS, name), (None, None))
            slots.append(Slot.from_dict(name, definition, where[0], where[1]))
        session = data.get(SESSION_CONFIG_KEY) or {}
        expiry = session.get(SESSION_EXPIRATION_TIME_KEY)
        session_config = SessionConfig(
            C.DEFAULT_SESSION_EXPIRATION_TIME_IN_MINUTES if expiry is None else expiry,
            session.get(CARRY_OVER_SLOTS_KEY, C.DEFAULT_CARRY_OVER_SLOTS_TO_NEW_SESSION),
        )
        config = data.get(KEY_CONFIG) or {}
        return cls(
            intents=data.get(KEY_INTENTS) or [],
            entities=data.get(KEY_ENTITIES) or [],
            slots=slots,
            responses=data.get(KEY_RESPONSES) or {},
            action_names=data.get(KEY_ACTIONS) or [],
            forms=data.get(KEY_FORMS) or {},
            data=data,
            action_texts=data.get(KEY_E2E_ACTIONS) or [],
            store_entities_as_slots=config.get("store_entities_as_slots", True),
            session_config=session_config,
            sources=sources,
            duplicates=duplicates,
        )

    def merge(self, domain: "Domain | None", override: bool = False) -> "Domain":
        """Combine two domains (lists unioned; mappings: self wins unless ``override``)."""
        if domain is None or domain.is_empty():
            return self
        if self.is_empty():
            return domain
        merged, _ = merge_domain_dicts(self.as_dict(), domain.as_dict(), override)
        sources = dict(domain._sources) if override else {}
        for key, where in (self._sources.items()):
            sources.setdefault(key, where)
        for key, where in domain._sources.items():
            sources.setdefault(key, where)
        return self._build(merged, sources)

    # ----------------------------------------------------- construction bits --
    @staticmethod
    def collect_entity_properties(
        domain_entities: list[str | dict[str, Any]],
    ) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
        entities: list[str] = []
        roles: dict[str, list[str]] = {}
        groups: dict[str, list[str]] = {}
        for entity in domain_entities:
            if isinstance(entity, dict):
                for name, sub in entity.items():
                    entities.append(str(name))
                    sub = sub or {}
                    if ENTITY_ROLES_KEY in sub:
                        roles[str(name)] = [str(r) for r in sub[ENTITY_ROLES_KEY] or []]
                    if ENTITY_GROUPS_KEY in sub:
                        groups[str(name)] = [str(g) for g in sub[ENTITY_GROUPS_KEY] or []]
            else:
                entities.append(str(entity))
        return entities, roles, groups

    @staticmethod
    def concatenate_entity_labels(
        entity_labels: dict[str, list[str]], entity: str | None = None
    ) -> list[str]:
        """``entity#role`` / ``entity#group`` labels (featurised like entities)."""
        sep = C.ENTITY_LABEL_SEPARATOR
        if entity is not None:
            return [f"{entity}{sep}{sub}" for sub in entity_labels.get(entity, [])]
        return [f"{label}{sep}{sub}" for label, subs in entity_labels.items() for sub in subs]

    @classmethod
    def collect_intent_properties(
        cls,
        intents: list[str | dict[str, Any]],
        entities: list[str],
        roles: dict[str, list[str]],
        groups: dict[str, list[str]],
    ) -> dict[str, dict[str, Any]]:
        properties: dict[str, dict[str, Any]] = {}
        duplicates = set()
        for intent in intents:
            name, props = cls._intent_properties(intent, entities, roles, groups)
            if name in properties:
                duplicates.add(name)
            properties[name] = props
        if duplicates:
            raise InvalidDomain(
                f"Intents are not unique! Found multiple intents with name(s) {sorted(duplicates)}.",
                fix="Either rename or remove the duplicate ones.",
            )
        for name in C.DEFAULT_INTENTS:
            if name not in properties:
                properties[name] = cls._intent_properties(name, entities, roles, groups)[1]
        return properties

    @classmethod
    def _intent_properties(
        cls,
        intent: str | dict[str, Any],
        entities: list[str],
        roles: dict[str, list[str]],
        groups: dict[str, list[str]],
    ) -> tuple[str, dict[str, Any]]:
        if isinstance(intent, dict):
            name = _name_of(intent)
            props = copy.deepcopy(next(iter(intent.values())) or {})
        else:
            name, props = str(intent), {}
        props.setdefault(USE_ENTITIES_KEY, True)
        props.setdefault(IGNORE_ENTITIES_KEY, [])
        if not props[USE_ENTITIES_KEY]:  # False, None and []
            props[USE_ENTITIES_KEY] = []
        if props[USE_ENTITIES_KEY] is True:
            included = set(entities)
            included.update(cls.concatenate_entity_labels(roles))
            included.update(cls.concatenate_entity_labels(groups))
        else:
            included = set(props[USE_ENTITIES_KEY])
            for entity in list(included):
                included.update(cls.concatenate_entity_labels(roles, entity))
                included.update(cls.concatenate_entity_labels(groups, entity))
        excluded = set(props[IGNORE_ENTITIES_KEY] or [])
        for entity in list(excluded):
            excluded.update(cls.concatenate_entity_labels(roles, entity))
            excluded.update(cls.concatenate_entity_labels(groups, entity))
        if isinstance(props[USE_ENTITIES_KEY], list) and included & excluded:
            logger.warning(
                "Entities %s are explicitly included and excluded for intent '%s'; "
                "excluding takes precedence.", sorted(included & excluded), name,
            )
        props[USED_ENTITIES_KEY] = sorted(included - excluded)
        del props[USE_ENTITIES_KEY]
        del props[IGNORE_ENTITIES_KEY]
        return name, props

    @staticmethod
    def _initialize_forms(forms: dict[str, Any]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for name, form in (forms or {}).items():
            form = form or {}
            ignored = form.get(IGNORED_INTENTS) or []
            if isinstance(ignored, str):
                ignored = [ignored]
            entry: dict[str, Any] = {REQUIRED_SLOTS_KEY: list(form.get(REQUIRED_SLOTS_KEY) or [])}
            if ignored:
                entry[IGNORED_INTENTS] = list(ignored)
            result[str(name)] = entry
        return result

    def _add_default_slots(self) -> None:
        names = {s.name for s in self.slots}
        if self.form_names and C.REQUESTED_SLOT not in names:
            self.slots.append(TextSlot(C.REQUESTED_SLOT, mappings=[], influence_conversation=False))
        if C.DEFAULT_KNOWLEDGE_BASE_ACTION in self.action_names_or_texts:
            for name in (SLOT_LISTED_ITEMS, SLOT_LAST_OBJECT, SLOT_LAST_OBJECT_TYPE):
                if name not in names:
                    self.slots.append(TextSlot(name, mappings=[], influence_conversation=False))
        for slot in self.slots:
            if isinstance(slot, CategoricalSlot):
                slot.add_default_value()
        if C.SESSION_START_METADATA_SLOT not in names:
            self.slots.append(AnySlot(C.SESSION_START_METADATA_SLOT, mappings=[]))

    def _build_data(
        self,
        data: dict[str, Any] | None,
        intents: list,
        entities: list,
        slots: list[Slot],
        responses: dict,
        action_names: list,
        forms: dict,
        session_config: SessionConfig,
        store_entities_as_slots: bool,
    ) -> dict[str, Any]:
        """The domain as Rasa serialises it (``Domain.as_dict()``)."""
        if data is None:
            data = {
                KEY_INTENTS: intents,
                KEY_ENTITIES: entities,
                KEY_SLOTS: {s.name: s.as_domain_dict() for s in slots},
                KEY_RESPONSES: responses,
                KEY_ACTIONS: action_names,
                KEY_FORMS: forms,
                KEY_E2E_ACTIONS: self.action_texts,
            }
        data = copy.deepcopy(plain_data(data))
        data.pop("duplicates", None)
        result: dict[str, Any] = {KEY_TRAINING_DATA_FORMAT_VERSION: LATEST_TRAINING_DATA_FORMAT_VERSION}
        if not store_entities_as_slots:
            result[KEY_CONFIG] = {"store_entities_as_slots": False}
        result[SESSION_CONFIG_KEY] = session_config.as_dict()
        # intents: drop redundant properties (Rasa's _sanitize_intents_in_domain_dict)
        clean_intents: list[Any] = []
        for intent in data.get(KEY_INTENTS) or []:
            if isinstance(intent, dict):
                name, props = next(iter(intent.items()))
                props = dict(props or {})
                if props.get(USE_ENTITIES_KEY) is True:
                    props.pop(USE_ENTITIES_KEY)
                if not props.get(IGNORE_ENTITIES_KEY):
                    props.pop(IGNORE_ENTITIES_KEY, None)
                clean_intents.append({name: props} if props else name)
            else:
                clean_intents.append(intent)
        sections: dict[str, Any] = {
            KEY_INTENTS: clean_intents,
            KEY_ENTITIES: data.get(KEY_ENTITIES) or [],
            KEY_SLOTS: {
                name: {**(definition or {}), C.SLOT_MAPPINGS: (definition or {}).get(C.SLOT_MAPPINGS) or []}
                for name, definition in (data.get(KEY_SLOTS) or {}).items()
            },
            KEY_RESPONSES: data.get(KEY_RESPONSES) or {},
            KEY_ACTIONS: data.get(KEY_ACTIONS) or [],
            KEY_FORMS: copy.deepcopy(self.forms),
            KEY_E2E_ACTIONS: data.get(KEY_E2E_ACTIONS) or [],
        }
        for key, value in sections.items():
            if value:
                result[key] = value
        return result

    def _check_domain_sanity(self) -> None:
        """Cross-references: forms, mappings and conditions must name real things."""
        slot_names = {s.name for s in self.slots}
        intents = set(self.intent_properties)

        def where(*key: Any) -> Source:
            return self._sources.get(key) or self._sources.get(key[:2]) or (None, None)

        dup_actions = sorted({a for a in self.action_names_or_texts if self.action_names_or_texts.count(a) > 1})
        if dup_actions:
            raise InvalidDomain(
                f"Duplicate actions in domain: {', '.join(dup_actions)}.",
                fix="An action may not share its name with a form or be listed twice.",
            )
        dup_entities = sorted({e for e in self.entities if self.entities.count(e) > 1})
        if dup_entities:
            raise InvalidDomain(f"Duplicate entities in domain: {', '.join(dup_entities)}.")

        for form_name, form in self.forms.items():
            for slot_name in form[REQUIRED_SLOTS_KEY]:
                if slot_name not in slot_names:
                    w = where(KEY_FORMS, form_name, REQUIRED_SLOTS_KEY, slot_name)
                    raise InvalidDomain(
                        f"The form '{form_name}' requires slot '{slot_name}', which is not "
                        f"defined in the domain.",
                        w[0], w[1],
                        fix=f"Add '{slot_name}' under `slots:` (with mappings) or remove it "
                        "from the form.",
                    )
            for intent in form.get(IGNORED_INTENTS, []):
                if intent not in intents:
                    w = where(KEY_FORMS, form_name)
                    logger.warning("%s: form '%s' ignores unknown intent '%s'.", _fmt(w), form_name, intent)

        for slot in self._user_slots:
            for j, mapping in enumerate(slot.mappings):
                w = where(KEY_SLOTS, slot.name, C.SLOT_MAPPINGS, j)
                for key in ("intent", "not_intent"):
                    for intent in _names(mapping.get(key)):
                        if intent not in intents:
                            # Rasa trains such projects (the name never matches a message):
                            # warn, as `data validate --fail-on-warnings` fails on it.
                            logger.warning(
                                "%s: slot '%s' has a mapping with %s '%s', which is not an intent "
                                "of the domain; that condition never matches. Fix: add '%s' under "
                                "`intents:` or fix the name.",
                                _fmt(w), slot.name, key, intent, intent,
                            )
                if mapping.get("type") == "from_entity" and mapping.get("entity") not in self.entities:
                    logger.warning(
                        "%s: slot '%s' maps from entity '%s', which is not in the domain's "
                        "entities; it will never be filled.",
                        _fmt(w), slot.name, mapping.get("entity"),
                    )
                for condition in mapping.get(C.MAPPING_CONDITIONS) or []:
                    requested = condition.get("requested_slot")
                    if requested is not None and requested not in slot_names:
                        logger.warning(
                            "%s: slot '%s' has a mapping condition on requested_slot '%s', which "
                            "is not a slot of the domain; that condition never matches. Fix: "
                            "define slot '%s' or fix the name.",
                            _fmt(w), slot.name, requested, requested,
                        )
                    loop = condition.get("active_loop")
                    if loop is not None and loop not in self.form_names and loop not in self._custom_actions:
                        logger.warning(
                            "%s: slot '%s' has a mapping condition on active_loop '%s', "
                            "which is not a form of the domain.", _fmt(w), slot.name, loop,
                        )

        for name, variations in self.responses.items():
            for j, variation in enumerate(variations):
                for condition in variation.get(RESPONSE_CONDITION) or []:
                    if condition.get("name") not in slot_names:
                        w = where(KEY_RESPONSES, name, j)
                        # Rasa reads an unknown slot as unset (None) and trains the project.
                        logger.warning(
                            "%s: response '%s' has a condition on slot '%s', which is not a slot "
                            "of the domain; it is read as an unset slot. Fix: define that slot "
                            "under `slots:` or fix the condition.",
                            _fmt(w), name, condition.get("name"),
                        )

    # ------------------------------------------------------------ accessors --
    def source_of(self, *key: Any) -> Source:
        """(file, line) where a domain element was defined, e.g. ``("slots", "name")``."""
        return self._sources.get(tuple(key), (None, None))

    @property
    def intents(self) -> list[str]:
        return sorted(self.intent_properties)

    def intent_config(self, intent_name: str) -> dict[str, Any]:
        return self.intent_properties.get(intent_name, {})

    @property
    def retrieval_intents(self) -> list[str]:
        return [i for i, p in self.intent_properties.items() if p.get(IS_RETRIEVAL_INTENT_KEY)]

    def is_retrieval_intent(self, intent_name: str) -> bool:
        return bool(self.intent_properties.get(intent_name, {}).get(IS_RETRIEVAL_INTENT_KEY))

    @staticmethod
    def is_retrieval_intent_response(response: tuple[str, list[dict[str, Any]]]) -> bool:
        return C.RESPONSE_IDENTIFIER_DELIMITER in response[0]

    @property
    def retrieval_intent_responses(self) -> dict[str, list[dict[str, Any]]]:
        return {k: v for k, v in self.responses.items() if self.is_retrieval_intent_response((k, v))}

    @property
    def entity_states(self) -> list[str]:
        return (
            list(self.entities)
            + self.concatenate_entity_labels(self.roles)
            + self.concatenate_entity_labels(self.groups)
        )

    @property
    def slot_states(self) -> list[str]:
        return [f"{s.name}_{i}" for s in self.slots for i in range(s.feature_dimensionality())]

    @property
    def input_states(self) -> list[str]:
        return self.intents + self.entity_states + self.slot_states + self.action_names_or_texts + self.form_names

    @property
    def num_actions(self) -> int:
        return len(self.action_names_or_texts)

    @property
    def user_actions_and_forms(self) -> list[str]:
        return self.user_actions + self.form_names

    @property
    def actions_which_explicitly_need_domain(self) -> list[str]:
        """Custom actions listed with ``send_domain: true`` (Rasa 3.6)."""
        return list(self._actions_which_explicitly_need_domain)

    @property
    def custom_actions(self) -> list[str]:
        return list(self._custom_actions)

    def slot_by_name(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    def required_slots_for_form(self, form_name: str) -> list[str]:
        form = self.forms.get(form_name)
        return list(form[REQUIRED_SLOTS_KEY]) if form else []

    def slot_mapping_for_form(self, form_name: str) -> dict[str, list[dict[str, Any]]]:
        """Mappings of the form's required slots (defined on the slots since Rasa 3)."""
        result = {}
        for name in self.required_slots_for_form(form_name):
            slot = self.slot_by_name(name)
            result[name] = list(slot.mappings) if slot else []
        return result

    def slots_for_entities(self, entities: list[dict[str, Any]]) -> list[Any]:
        """``SlotSet`` events for unconditional ``from_entity`` mappings (Rasa 3.6;
        the story generator uses it to fill slots from annotated entities)."""
        from bot.shared.events import SlotSet

        if not self.store_entities_as_slots:
            return []
        events = []
        for slot in self.slots:
            matching = []
            for mapping in slot.mappings:
                conditions = mapping.get(C.MAPPING_CONDITIONS)
                if mapping.get(C.MAPPING_TYPE) != "from_entity" or (
                    conditions and conditions[0].get("active_loop") is not None
                ):
                    continue
                for entity in entities:
                    if (
                        entity.get(C.ENTITY_ATTRIBUTE_TYPE) == mapping.get(C.ENTITY_ATTRIBUTE_TYPE)
                        and entity.get(C.ENTITY_ATTRIBUTE_ROLE) == mapping.get(C.ENTITY_ATTRIBUTE_ROLE)
                        and entity.get(C.ENTITY_ATTRIBUTE_GROUP) == mapping.get(C.ENTITY_ATTRIBUTE_GROUP)
                    ):
                        matching.append(entity.get(C.ENTITY_ATTRIBUTE_VALUE))
            if matching:
                value = matching if slot.type_name == "list" else matching[-1]
                events.append(SlotSet(slot.name, value))
        return events

    def index_for_action(self, action_name: str) -> int:
        try:
            return self.action_names_or_texts.index(action_name)
        except ValueError:
            self.raise_action_not_found_exception(action_name)

    def raise_action_not_found_exception(self, action_name_or_text: str) -> "NoReturn":  # type: ignore[name-defined]
        listed = "\n".join(f"\t - {a}" for a in self.action_names_or_texts)
        raise ActionNotFound(
            f"Cannot access action '{action_name_or_text}', as that name is not a registered "
            f"action for this domain. Available actions are: \n{listed}"
        )

    @property
    def utterances_for_response(self) -> set[str]:
        """``utter_`` actions that need a response (retrieval parents excluded)."""
        utterances, parents = set(), set()
        for action in self.action_names_or_texts:
            if not action.startswith(C.UTTER_PREFIX):
                continue
            split = action.split(C.RESPONSE_IDENTIFIER_DELIMITER)
            if len(split) == 2:
                parents.add(split[0])
            utterances.add(action)
        return utterances - parents

    def check_missing_responses(self) -> list[str]:
        """Warn about ``utter_`` actions without a response; returns their names."""
        missing = sorted(self.utterances_for_response - set(self.responses))
        for name in missing:
            w = self.source_of(KEY_ACTIONS, name)
            logger.warning(
                "%s: action '%s' is listed as a response action, but there is no matching "
                "response.", _fmt(w), name,
            )
        return missing

    def count_conditional_response_variations(self) -> int:
        return sum(1 for vs in self.responses.values() for v in vs if RESPONSE_CONDITION in v)

    def is_empty(self) -> bool:
        return self.as_dict() == Domain.empty().as_dict()

    # --------------------------------------------------------- serialisation --
    def as_dict(self) -> dict[str, Any]:
        """Rasa's domain JSON (what the rasa_sdk action protocol sends as ``domain``)."""
        return copy.deepcopy(self._data)

    def as_yaml(self) -> str:
        return dump_yaml(self.as_dict())

    def persist(self, filename: str | Path) -> None:
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        Path(filename).write_text(self.as_yaml(), encoding="utf-8")

    def fingerprint(self) -> str:
        """Stable hash of everything that affects training and prediction."""
        data = self.as_dict()
        data[KEY_INTENTS] = sorted(
            data.get(KEY_INTENTS, []), key=lambda i: _name_of(i)
        )
        data[KEY_ACTIONS] = self.action_names_or_texts
        encoded = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()

    def __hash__(self) -> int:
        return int(self.fingerprint()[:16], 16)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Domain):
            return NotImplemented
        return self.fingerprint() == other.fingerprint()

    def __deepcopy__(self, memo: dict[int, Any]) -> "Domain":
        return self._build(copy.deepcopy(self._data, memo), dict(self._sources), dict(self.duplicates))

    def __repr__(self) -> str:
        return (
            f"Domain(intents={len(self.intent_properties)}, entities={len(self.entities)}, "
            f"slots={len(self.slots)}, actions={len(self.action_names_or_texts)}, "
            f"forms={len(self.form_names)})"
        )

    # ---------------------------------------------------------------- states --
    def _get_featurized_entities(self, latest_message: Any) -> set[str]:
        intent = getattr(latest_message, "intent", None) or {}
        intent_name = intent.get(C.INTENT_NAME_KEY) if isinstance(intent, dict) else None
        intent_config = self.intent_config(intent_name) if intent_name else {}
        entities = getattr(latest_message, "entities", None) or []
        sep = C.ENTITY_LABEL_SEPARATOR
        names = {e["entity"] for e in entities if "entity" in e}
        names |= {f"{e['entity']}{sep}{e['role']}" for e in entities if "entity" in e and "role" in e}
        names |= {f"{e['entity']}{sep}{e['group']}" for e in entities if "entity" in e and "group" in e}
        wanted = set(intent_config.get(USED_ENTITIES_KEY, names))
        return names & wanted

    def _get_user_sub_state(self, tracker: "DialogueStateTracker") -> SubState:
        latest = getattr(tracker, "latest_message", None)
        if not latest or _message_is_empty(latest):
            return {}
        sub_state = dict(_message_sub_state(latest))
        entities = tuple(sorted(self._get_featurized_entities(latest) & set(sub_state.get(C.ENTITIES, ()))))
        if entities:
            sub_state[C.ENTITIES] = entities
        else:
            sub_state.pop(C.ENTITIES, None)
        return sub_state

    @staticmethod
    def _get_slots_sub_state(tracker: "DialogueStateTracker", omit_unset_slots: bool = False) -> SubState:
        slots: SubState = {}
        for slot_name, slot in tracker.slots.items():
            if slot is None:
                continue
            features = slot.as_feature()
            if not features:
                continue
            if omit_unset_slots and not slot.has_been_set:
                continue
            if slot.value == C.SHOULD_NOT_BE_SET:
                slots[slot_name] = C.SHOULD_NOT_BE_SET
            elif any(features):
                slots[slot_name] = tuple(features)
        return slots

    @staticmethod
    def _get_prev_action_sub_state(tracker: "DialogueStateTracker") -> SubState | None:
        return getattr(tracker, "latest_action", None)

    @staticmethod
    def _get_active_loop_sub_state(tracker: "DialogueStateTracker") -> SubState:
        name = _active_loop_name(getattr(tracker, "active_loop", None))
        return {C.LOOP_NAME: name} if name else {}

    @staticmethod
    def _clean_state(state: State) -> State:
        return {k: v for k, v in state.items() if v}

    def get_active_state(self, tracker: "DialogueStateTracker", omit_unset_slots: bool = False) -> State:
        """The featurisable state of the tracker now (user, slots, prev_action, active_loop)."""
        state = {
            C.USER: self._get_user_sub_state(tracker),
            C.SLOTS: self._get_slots_sub_state(tracker, omit_unset_slots=omit_unset_slots),
            C.PREVIOUS_ACTION: self._get_prev_action_sub_state(tracker),
            C.ACTIVE_LOOP: self._get_active_loop_sub_state(tracker),
        }
        return self._clean_state(state)  # type: ignore[arg-type]

    @staticmethod
    def _remove_rule_only_features(state: State, rule_only_data: dict[str, Any] | None) -> None:
        if not rule_only_data:
            return
        rule_only_slots = rule_only_data.get(C.RULE_ONLY_SLOTS, [])
        rule_only_loops = rule_only_data.get(C.RULE_ONLY_LOOPS, [])
        for slot in rule_only_slots:
            state.get(C.SLOTS, {}).pop(slot, None)
        if rule_only_loops and state.get(C.ACTIVE_LOOP, {}).get(C.LOOP_NAME) in rule_only_loops:
            del state[C.ACTIVE_LOOP]

    @staticmethod
    def _substitute_rule_only_user_input(state: State, last_ml_state: State) -> None:
        prev_action = (state.get(C.PREVIOUS_ACTION) or {}).get(C.ACTION_NAME)
        if prev_action != C.ACTION_LISTEN_NAME:
            if not last_ml_state.get(C.USER) and state.get(C.USER):
                del state[C.USER]
            elif last_ml_state.get(C.USER):
                state[C.USER] = last_ml_state[C.USER]

    def states_for_tracker_history(
        self,
        tracker: "DialogueStateTracker",
        omit_unset_slots: bool = False,
        ignore_rule_only_turns: bool = False,
        rule_only_data: dict[str, Any] | None = None,
    ) -> list[State]:
        """One state per action of the tracker's history, exactly as Rasa builds them."""
        states: list[State] = []
        last_ml_action_sub_state = None
        turn_was_hidden = False
        for tr, hide_rule_turn in _all_prior_trackers(tracker):
            if ignore_rule_only_turns:
                if not turn_was_hidden:
                    last_ml_action_sub_state = self._get_prev_action_sub_state(tr)
                if not tr.followup_action and not tr.latest_action_name == tr.active_loop_name:
                    turn_was_hidden = hide_rule_turn
                if turn_was_hidden:
                    continue
            state = self.get_active_state(tr, omit_unset_slots=omit_unset_slots)
            if ignore_rule_only_turns:
                self._remove_rule_only_features(state, rule_only_data)
                if states:
                    self._substitute_rule_only_user_input(state, states[-1])
                if last_ml_action_sub_state:
                    state[C.PREVIOUS_ACTION] = last_ml_action_sub_state
            states.append(self._clean_state(state))
        return states


# --------------------------------------------------------------------------- #
# Tracker / event helpers (tolerant of dict- or object-shaped values)
# --------------------------------------------------------------------------- #


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _active_loop_name(active_loop: Any) -> str | None:
    if not active_loop:
        return None
    if isinstance(active_loop, dict):
        return active_loop.get(C.LOOP_NAME)
    return getattr(active_loop, "name", None)


def _message_is_empty(message: Any) -> bool:
    is_empty = getattr(message, "is_empty", None)
    if callable(is_empty):
        return bool(is_empty())
    intent = getattr(message, "intent", None) or {}
    return not getattr(message, "text", None) and not intent.get(C.INTENT_NAME_KEY)


def _message_sub_state(message: Any) -> SubState:
    as_sub_state = getattr(message, "as_sub_state", None)
    if callable(as_sub_state):
        return as_sub_state()
    sep = C.ENTITY_LABEL_SEPARATOR
    ents = getattr(message, "entities", None) or []
    entities = [e.get("entity") for e in ents]
    entities += [f"{e.get('entity')}{sep}{e.get('role')}" for e in ents if "role" in e]
    entities += [f"{e.get('entity')}{sep}{e.get('group')}" for e in ents if "group" in e]
    use_text = getattr(message, "use_text_for_featurization", None)
    out: SubState = {}
    text = getattr(message, "text", None)
    intent_name = (getattr(message, "intent", None) or {}).get(C.INTENT_NAME_KEY)
    if text and (use_text or use_text is None):
        out[C.TEXT] = text
    if intent_name and not use_text:
        out[C.INTENT] = intent_name
    if entities and not use_text:
        out[C.ENTITIES] = entities
    return out


def _all_prior_trackers(tracker: Any) -> Iterator[tuple[Any, bool]]:
    generate = getattr(tracker, "generate_all_prior_trackers", None)
    if callable(generate):
        yield from generate()
        return
    # Fallback for trackers without Rasa's helper: replay applied events.
    from bot.shared.events import ActionExecuted

    tr = tracker.init_copy()
    for event in tracker.applied_events():
        if isinstance(event, ActionExecuted):
            yield tr, getattr(event, "hide_rule_turn", False)
        tr.update(event)
    yield tr, False
