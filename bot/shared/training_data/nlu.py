"""Rasa 3 YAML NLU training data: reader, values and writer.

Mirrors ``rasa/shared/nlu/training_data`` (``formats/rasa_yaml.py``,
``entities_parser.py``, ``training_data.py``) without the heavy parts. Every
problem names the file and line, so a trainer can fix it without guessing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from bot.shared.exceptions import TrainingDataError, YamlError
from bot.shared.yaml_io import line_of, read_yaml_file, to_plain, yaml_files

logger = logging.getLogger(__name__)

KEY_NLU = "nlu"
KEY_INTENT = "intent"
KEY_SYNONYM = "synonym"
KEY_REGEX = "regex"
KEY_LOOKUP = "lookup"
KEY_EXAMPLES = "examples"
KEY_METADATA = "metadata"
KEY_TEXT = "text"
#: kefu extension: top-level ``sentiment:`` section (``- label: negative`` + examples)
KEY_SENTIMENT = "sentiment"
KEY_LABEL = "label"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
RESPONSE_IDENTIFIER_DELIMITER = "/"

# `[entity_text]((entity_type(:entity_synonym)?)|{entity_dict}|[list_entity_dicts])`
ENTITY_REGEX = re.compile(
    r"\[(?P<entity_text>[^\]]+?)\]"
    r"(\((?P<entity>[^:)]+?)(?:\:(?P<value>[^)]+))?\)"
    r"|\{(?P<entity_dict>[^}]+?)\}"
    r"|\[(?P<list_entity_dicts>.*?)\])"
)
SINGLE_ENTITY_DICT = re.compile(r"{(?P<entity_dict>[^}]+?)\}")
# What is left of an annotation the regex above could not read, e.g. `[Berlin](city`.
LEFTOVER_ANNOTATION = re.compile(r"\[[^\]\n]*\][({\[]")
ENTITY_DICT_KEYS = {"entity", "value", "role", "group"}


class TrainingDataWarning(UserWarning):
    """A problem in NLU data that does not stop training (Rasa warns too)."""


def _warn(message: str, filename: Any = None, line: int | None = None) -> None:
    where = f"{filename}:{line}: " if filename and line else (f"{filename}: " if filename else "")
    warnings.warn(f"{where}{message}", TrainingDataWarning, stacklevel=3)


def warn_training_data(message: str, filename: Any = None, line: int | None = None) -> None:
    """A ``TrainingDataWarning`` prefixed with ``file:line`` (for pipeline components)."""
    _warn(message, filename, line)


class Message:
    """One training example or one message being parsed (Rasa's ``Message``).

    Mutable on purpose: pipeline components add tokens, features, intent and
    entities to ``data`` one after another.
    """

    __slots__ = ("text", "data", "source", "line")

    def __init__(
        self,
        text: str,
        data: dict[str, Any] | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.text = text
        self.data: dict[str, Any] = dict(data or {})
        self.source = source
        self.line = line

    def get(self, key: str, default: Any = None) -> Any:
        if key == KEY_TEXT:
            return self.text
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    @property
    def intent(self) -> str | None:
        value = self.data.get(KEY_INTENT)
        if isinstance(value, dict):
            return value.get("name")
        return value

    @property
    def entities(self) -> list[dict[str, Any]]:
        return self.data.get("entities") or []

    @property
    def intent_response_key(self) -> str | None:
        return self.data.get("intent_response_key")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON view (no features, no tokens)."""
        out = {KEY_TEXT: self.text}
        for key in ("intent", "intent_response_key", "entities", "metadata"):
            if self.data.get(key) not in (None, [], {}):
                out[key] = self.data[key]
        return out

    def __repr__(self) -> str:
        return f"Message(text={self.text!r}, intent={self.intent!r}, entities={self.entities!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_dict(), sort_keys=True, ensure_ascii=False))


# --------------------------------------------------------------------------- entities


def parse_training_example(
    example: str,
    intent: str | None = None,
    filename: Any = None,
    line: int | None = None,
) -> Message:
    """Turn an annotated example (``book [Berlin](city)``) into a ``Message``."""
    entities = find_entities_in_training_example(example, filename, line)
    plain = replace_entities(example)
    for e in entities:
        span = plain[e["start"] : e["end"]]
        if not span.strip():
            _warn(f"Entity annotation for '{e['entity']}' in example '{example}' has no text.", filename, line)
        elif span != span.strip():
            _warn(
                f"Entity annotation '[{span}]' ({e['entity']}) in example '{example}' starts or ends with "
                "whitespace, so it does not match its text; move the spaces out of the brackets.",
                filename, line,
            )
    if LEFTOVER_ANNOTATION.search(plain):
        bad = LEFTOVER_ANNOTATION.search(plain).group(0)  # type: ignore[union-attr]
        raise TrainingDataError(
            f"Entity annotation near '{bad}' in example '{example}' does not match "
            f"the annotation syntax.",
            filename,
            line,
            fix="Write '[text](entity)', '[text](entity:value)' or "
            "'[text]{\"entity\": \"name\", \"value\": \"v\"}' and close every bracket.",
        )
    data: dict[str, Any] = {}
    if intent:
        if RESPONSE_IDENTIFIER_DELIMITER in intent:
            data[KEY_INTENT] = intent.split(RESPONSE_IDENTIFIER_DELIMITER, 1)[0]
            data["intent_response_key"] = intent
        else:
            data[KEY_INTENT] = intent
    if entities:
        data["entities"] = entities
    return Message(plain, data, str(filename) if filename else None, line)


def find_entities_in_training_example(
    example: str, filename: Any = None, line: int | None = None
) -> list[dict[str, Any]]:
    """Entities with character offsets in the *cleaned* text (annotations removed)."""
    entities: list[dict[str, Any]] = []
    offset = 0
    for match in ENTITY_REGEX.finditer(example):
        groups = match.groupdict()
        entity_text = groups["entity_text"]
        for attrs in _entity_attributes(groups, example, filename, line):
            start = match.start() - offset
            end = start + len(entity_text)
            entity: dict[str, Any] = {
                "start": start,
                "end": end,
                "value": attrs.get("value", entity_text),
                "entity": attrs["entity"],
            }
            if attrs.get("role") is not None:
                entity["role"] = attrs["role"]
            if attrs.get("group") is not None:
                entity["group"] = attrs["group"]
            entities.append(entity)
        offset += len(match.group(0)) - len(entity_text)
    return entities


def _entity_attributes(
    groups: dict[str, Any], example: str, filename: Any, line: int | None
) -> list[dict[str, Any]]:
    if groups.get("entity"):
        attrs: dict[str, Any] = {"entity": groups["entity"].strip()}
        if groups.get("value"):
            attrs["value"] = groups["value"].strip()
        return [attrs]
    if groups.get("entity_dict"):
        return [_parse_entity_dict("{" + groups["entity_dict"] + "}", example, filename, line)]
    raw_list = groups.get("list_entity_dicts") or ""
    dicts = SINGLE_ENTITY_DICT.findall(raw_list)
    if not dicts:
        raise TrainingDataError(
            f"Entity annotation list '[{raw_list}]' in example '{example}' holds no entity.",
            filename,
            line,
            fix='Write [text][{"entity": "a"}, {"entity": "b"}].',
        )
    return [_parse_entity_dict("{" + d + "}", example, filename, line) for d in dicts]


def _parse_entity_dict(raw: str, example: str, filename: Any, line: int | None) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainingDataError(
            f"Malformed entity annotation {raw} in example '{example}': {e.msg}.",
            filename,
            line,
            fix='Use valid JSON with double quotes, e.g. {"entity": "city", "value": "Berlin"}.',
        ) from e
    if not isinstance(parsed, dict) or not isinstance(parsed.get("entity"), str):
        raise TrainingDataError(
            f"Entity annotation {raw} in example '{example}' has no 'entity' name.",
            filename,
            line,
            fix='Add "entity": "<name>" to the annotation.',
        )
    unknown = set(parsed) - ENTITY_DICT_KEYS
    if unknown:
        _warn(
            f"Entity annotation {raw} has unknown keys {sorted(unknown)}; "
            f"only {sorted(ENTITY_DICT_KEYS)} are used.",
            filename,
            line,
        )
    return {k: parsed[k] for k in ENTITY_DICT_KEYS if k in parsed}


def replace_entities(example: str) -> str:
    """The example text with every annotation replaced by its entity text."""
    return ENTITY_REGEX.sub(lambda m: m.group("entity_text"), example)


def build_entity_annotation(text: str, entities: list[dict[str, Any]]) -> str:
    """Inverse of ``parse_training_example`` (used by the YAML writer)."""
    by_span: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in entities:
        by_span[(int(e["start"]), int(e["end"]))].append(e)
    out: list[str] = []
    pos = 0
    for (start, end), group in sorted(by_span.items()):
        if start < pos:  # overlapping spans cannot be written inline; keep the first
            continue
        span = text[start:end]
        out.append(text[pos:start])
        dicts = []
        for e in group:
            d = {"entity": e["entity"]}
            if e.get("value") is not None and str(e["value"]) != span:
                d["value"] = e["value"]
            for k in ("role", "group"):
                if e.get(k) is not None:
                    d[k] = e[k]
            dicts.append(d)
        if len(dicts) == 1 and set(dicts[0]) == {"entity"}:
            out.append(f"[{span}]({dicts[0]['entity']})")
        elif len(dicts) == 1:
            out.append(f"[{span}]{json.dumps(dicts[0], ensure_ascii=False)}")
        else:
            inner = ", ".join(json.dumps(d, ensure_ascii=False) for d in dicts)
            out.append(f"[{span}][{inner}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)


# --------------------------------------------------------------------------- TrainingData


class TrainingData:
    """Merged NLU training data of a project (Rasa's ``TrainingData``)."""

    def __init__(
        self,
        training_examples: list[Message] | None = None,
        entity_synonyms: dict[str, str] | None = None,
        regex_features: list[dict[str, Any]] | None = None,
        lookup_tables: list[dict[str, Any]] | None = None,
        responses: dict[str, list[dict[str, Any]]] | None = None,
        sentiment_examples: list[Message] | None = None,
    ) -> None:
        self.training_examples: list[Message] = list(training_examples or [])
        #: messages whose ``data["sentiment"]`` is negative|neutral|positive (kefu extension)
        self.sentiment_examples: list[Message] = list(sentiment_examples or [])
        self.entity_synonyms: dict[str, str] = dict(entity_synonyms or {})
        self.regex_features: list[dict[str, Any]] = list(regex_features or [])
        self.lookup_tables: list[dict[str, Any]] = list(lookup_tables or [])
        self.responses: dict[str, list[dict[str, Any]]] = dict(responses or {})

    # ---- views
    @property
    def intent_examples(self) -> list[Message]:
        return [m for m in self.training_examples if m.intent]

    @property
    def entity_examples(self) -> list[Message]:
        return [m for m in self.training_examples if m.entities]

    @property
    def intents(self) -> set[str]:
        return {m.intent for m in self.training_examples if m.intent}

    @property
    def retrieval_intents(self) -> set[str]:
        return {m.intent for m in self.training_examples if m.intent and m.intent_response_key}

    @property
    def entities(self) -> set[str]:
        return {e["entity"] for m in self.training_examples for e in m.entities}

    @property
    def entity_roles(self) -> set[str]:
        return {e["role"] for m in self.training_examples for e in m.entities if e.get("role")}

    @property
    def entity_groups(self) -> set[str]:
        return {e["group"] for m in self.training_examples for e in m.entities if e.get("group")}

    @property
    def number_of_examples_per_intent(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for m in self.training_examples:
            if m.intent:
                counts[m.intent] += 1
        return dict(counts)

    def is_empty(self) -> bool:
        return not (
            self.training_examples or self.entity_synonyms or self.regex_features or self.lookup_tables
            or self.sentiment_examples
        )

    # ---- combining
    def merge(self, *others: "TrainingData") -> "TrainingData":
        """A new TrainingData with this one's and the others' content."""
        merged = TrainingData(
            self.training_examples,
            self.entity_synonyms,
            self.regex_features,
            self.lookup_tables,
            self.responses,
            self.sentiment_examples,
        )
        for other in others:
            merged.training_examples.extend(other.training_examples)
            merged.sentiment_examples.extend(other.sentiment_examples)
            for key, value in other.entity_synonyms.items():
                _add_synonym(merged.entity_synonyms, key, value, None, None)
            for regex in other.regex_features:
                if regex not in merged.regex_features:
                    merged.regex_features.append(regex)
            merged.lookup_tables = _merge_lookups(merged.lookup_tables + other.lookup_tables)
            merged.responses.update(other.responses)
        return merged

    def as_json_dict(self) -> dict[str, Any]:
        out = {
            "training_examples": [m.as_dict() for m in self.training_examples],
            "entity_synonyms": dict(sorted(self.entity_synonyms.items())),
            "regex_features": self.regex_features,
            "lookup_tables": self.lookup_tables,
            "responses": self.responses,
        }
        if self.sentiment_examples:  # only when present: keeps older fingerprints stable
            out["sentiment_examples"] = [
                {"text": m.text, "sentiment": m.get(KEY_SENTIMENT)} for m in self.sentiment_examples
            ]
        return out

    def fingerprint(self) -> str:
        """Content hash: changes exactly when the training content changes."""
        blob = json.dumps(self.as_json_dict(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    # ---- writing
    def nlu_as_yaml(self) -> str:
        """Rasa 3 YAML (``version: "3.1"``) with annotations written inline."""
        items: list[dict[str, Any]] = []
        by_intent: dict[str, list[Message]] = defaultdict(list)
        for m in self.training_examples:
            key = m.intent_response_key or m.intent
            if key:
                by_intent[key].append(m)
        for intent, messages in by_intent.items():
            lines = "".join(
                f"- {build_entity_annotation(m.text, m.entities)}\n" for m in messages
            )
            items.append({KEY_INTENT: intent, KEY_EXAMPLES: _Literal(lines)})
        synonyms: dict[str, list[str]] = defaultdict(list)
        for original, value in self.entity_synonyms.items():
            synonyms[value].append(original)
        for value, originals in synonyms.items():
            items.append(
                {KEY_SYNONYM: value, KEY_EXAMPLES: _Literal("".join(f"- {o}\n" for o in originals))}
            )
        for regex in self.regex_features:
            items.append({KEY_REGEX: regex["name"], KEY_EXAMPLES: _Literal(f"- {regex['pattern']}\n")})
        for table in self.lookup_tables:
            elements = "".join(f"- {e}\n" for e in table["elements"])
            items.append({KEY_LOOKUP: table["name"], KEY_EXAMPLES: _Literal(elements)})
        out: dict[str, Any] = {"version": "3.1", KEY_NLU: items}
        by_label: dict[str, list[str]] = defaultdict(list)
        for m in self.sentiment_examples:
            by_label[str(m.get(KEY_SENTIMENT))].append(m.text)
        if by_label:
            out[KEY_SENTIMENT] = [
                {KEY_LABEL: label, KEY_EXAMPLES: _Literal("".join(f"- {t}\n" for t in texts))}
                for label, texts in by_label.items()
            ]
        return _dump_with_literals(out)

    def persist_yaml(self, path: str | Path) -> None:
        Path(path).write_text(self.nlu_as_yaml(), encoding="utf-8")

    def __repr__(self) -> str:
        return (
            f"TrainingData({len(self.training_examples)} examples, {len(self.intents)} intents, "
            f"{len(self.entities)} entities)"
        )


class _Literal(str):
    """Marks a string to be written as a `|` block."""


def _dump_with_literals(data: dict[str, Any]) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString
    import io

    def convert(value: Any) -> Any:
        if isinstance(value, _Literal):
            return LiteralScalarString(str(value))
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    yaml = YAML(typ="rt")
    yaml.allow_unicode = True
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(convert(data), buf)
    return buf.getvalue()


def _add_synonym(
    synonyms: dict[str, str], original: Any, value: Any, filename: Any, line: int | None
) -> None:
    key = str(original).lower()
    value = str(value)
    if str(original) == value:  # mapping a value onto itself adds nothing
        return
    if key in synonyms and synonyms[key] != value:
        _warn(
            f"Synonym '{original}' maps to '{synonyms[key]}' and to '{value}'; "
            f"'{value}' wins.",
            filename,
            line,
        )
    synonyms[key] = value


def _merge_lookups(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[str, list[str]] = {}
    for table in tables:
        elements = merged.setdefault(table["name"], [])
        for e in table["elements"]:
            if e not in elements:
                elements.append(e)
    return [{"name": name, "elements": elements} for name, elements in merged.items()]


# --------------------------------------------------------------------------- reader


def load_nlu_data(paths: str | Path | Iterable[str | Path]) -> TrainingData:
    """Read every Rasa YAML file with an ``nlu:`` key under the given files/folders."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise TrainingDataError("Training data path does not exist.", p, fix="Check the path.")
        for f in yaml_files(p):
            if f not in files:
                files.append(f)
    data = TrainingData()
    for f in files:
        parsed = read_yaml_file(f)
        if not isinstance(parsed, dict) or (KEY_NLU not in parsed and KEY_SENTIMENT not in parsed):
            logger.debug("Skipping %s: no 'nlu' or 'sentiment' key", f)
            continue
        data = data.merge(RasaYAMLReader(f).read_parsed(parsed))
    _validate(data)
    return data


def load_nlu_yaml(text: str, filename: str = "<string>") -> TrainingData:
    """Read NLU data from a YAML string (tests, HTTP uploads)."""
    from bot.shared.yaml_io import read_yaml

    parsed = read_yaml(text, filename)
    if not isinstance(parsed, dict) or (KEY_NLU not in parsed and KEY_SENTIMENT not in parsed):
        return TrainingData()
    data = RasaYAMLReader(filename).read_parsed(parsed)
    _validate(data)
    return data


class RasaYAMLReader:
    """Reads the ``nlu:`` section of one file (Rasa's ``RasaYAMLReader``)."""

    def __init__(self, filename: str | Path) -> None:
        self.filename = filename
        self.data = TrainingData()

    def read_parsed(self, parsed: dict[str, Any]) -> TrainingData:
        if KEY_SENTIMENT in parsed:
            self._parse_sentiment_section(parsed)
        items = parsed.get(KEY_NLU)
        if items is None:
            return self.data
        if not isinstance(items, list):
            raise YamlError(
                "'nlu' must be a list of items.",
                self.filename,
                line_of(parsed, KEY_NLU),
                fix="Write '- intent: name' items under 'nlu:'.",
            )
        for index, item in enumerate(items):
            line = line_of(items, index=index)
            if not isinstance(item, dict):
                raise YamlError(
                    f"NLU item {item!r} is not a mapping.",
                    self.filename,
                    line,
                    fix="Each item starts with 'intent:', 'synonym:', 'regex:' or 'lookup:'.",
                )
            if KEY_INTENT in item:
                self._parse_intent(item, line)
            elif KEY_SYNONYM in item:
                self._parse_synonym(item, line)
            elif KEY_REGEX in item:
                self._parse_regex(item, line)
            elif KEY_LOOKUP in item:
                self._parse_lookup(item, line)
            else:
                _warn(
                    f"Unexpected NLU item with keys {sorted(map(str, item))}; it is skipped. "
                    "Use 'intent', 'synonym', 'regex' or 'lookup'.",
                    self.filename,
                    line,
                )
        return self.data

    # ---- examples
    def _examples(self, item: dict[str, Any], name: str, line: int | None) -> Iterator[tuple[Any, int | None, Any]]:
        """(example, line, metadata) for a `|` block or a list of {text, metadata}."""
        examples = item.get(KEY_EXAMPLES)
        if examples is None:
            _warn(f"Item '{name}' has no examples.", self.filename, line)
            return
        base = line_of(item, KEY_EXAMPLES) or line
        if isinstance(examples, str):
            for offset, raw in enumerate(examples.splitlines()):
                ex_line = base + 1 + offset if base else None
                stripped = raw.strip()
                if not stripped:
                    continue
                if not stripped.startswith("-"):
                    _warn(
                        f"The item '{name}' contains an example that doesn't start with '- ': "
                        f"{stripped!r}. It is skipped.",
                        self.filename,
                        ex_line,
                    )
                    continue
                yield stripped[1:].strip(), ex_line, None
        elif isinstance(examples, list):
            for i, entry in enumerate(examples):
                ex_line = line_of(examples, index=i) or base
                if isinstance(entry, dict):
                    if KEY_TEXT not in entry:
                        raise TrainingDataError(
                            f"Example of '{name}' has no 'text' key.",
                            self.filename,
                            ex_line,
                            fix="Write '- text: ...' (optionally with 'metadata:').",
                        )
                    yield entry[KEY_TEXT], ex_line, to_plain(entry.get(KEY_METADATA))
                else:
                    yield entry, ex_line, None
        else:
            raise TrainingDataError(
                f"Examples of '{name}' must be a '|' block of '- ' lines or a list.",
                self.filename,
                base,
                fix="Write 'examples: |' followed by lines starting with '- '.",
            )

    def _require_string(self, value: Any, name: str, line: int | None) -> str:
        if not isinstance(value, str):
            raise TrainingDataError(
                f"Example {value!r} of '{name}' is not a string.",
                self.filename,
                line,
                fix="Quote the example so YAML reads it as text.",
            )
        return value

    def _parse_intent(self, item: dict[str, Any], line: int | None) -> None:
        intent = item[KEY_INTENT]
        if not isinstance(intent, str) or not intent.strip():
            raise TrainingDataError(
                f"Intent name {intent!r} is not a string.", self.filename, line,
                fix="Write 'intent: <name>'.",
            )
        intent = intent.strip()
        intent_metadata = to_plain(item.get(KEY_METADATA))
        for example, ex_line, metadata in self._examples(item, intent, line):
            text = self._require_string(example, intent, ex_line)
            if not text.strip():
                _warn(f"Empty example under intent '{intent}' is skipped.", self.filename, ex_line)
                continue
            message = parse_training_example(text, intent, self.filename, ex_line)
            if intent_metadata is not None or metadata is not None:
                message.set(KEY_METADATA, {"intent": intent_metadata, "example": metadata})
            self.data.training_examples.append(message)
            for entity in message.entities:
                span = message.text[entity["start"] : entity["end"]]
                if str(entity["value"]) != span:
                    _add_synonym(self.data.entity_synonyms, span, entity["value"], self.filename, ex_line)

    def _parse_sentiment_section(self, parsed: dict[str, Any]) -> None:
        """``sentiment: [- label: negative, examples: |...]`` into ``sentiment_examples``."""
        items = parsed[KEY_SENTIMENT]
        if items is None:
            return
        if not isinstance(items, list):
            raise YamlError(
                "'sentiment' must be a list of items.",
                self.filename,
                line_of(parsed, KEY_SENTIMENT),
                fix="Write '- label: negative' items with 'examples: |' under 'sentiment:'.",
            )
        for index, item in enumerate(items):
            line = line_of(items, index=index)
            label = item.get(KEY_LABEL) if isinstance(item, dict) else None
            if label not in SENTIMENT_LABELS:
                raise TrainingDataError(
                    f"Sentiment item {item!r} has no valid 'label'.",
                    self.filename,
                    line,
                    fix=f"Write 'label: <one of {', '.join(SENTIMENT_LABELS)}>' with 'examples: |'.",
                )
            for example, ex_line, _ in self._examples(item, str(label), line):
                text = self._require_string(example, str(label), ex_line).strip()
                if text:
                    self.data.sentiment_examples.append(
                        Message(text, {KEY_SENTIMENT: label}, str(self.filename), ex_line)
                    )

    def _parse_synonym(self, item: dict[str, Any], line: int | None) -> None:
        value = item[KEY_SYNONYM]
        if not isinstance(value, (str, int, float)):
            raise TrainingDataError(
                f"Synonym name {value!r} is not a string.", self.filename, line,
                fix="Write 'synonym: <value>'.",
            )
        for example, ex_line, _ in self._examples(item, str(value), line):
            original = self._require_string(example, str(value), ex_line)
            _add_synonym(self.data.entity_synonyms, original, value, self.filename, ex_line)

    def _parse_regex(self, item: dict[str, Any], line: int | None) -> None:
        name = str(item[KEY_REGEX])
        for example, ex_line, _ in self._examples(item, name, line):
            pattern = self._require_string(example, name, ex_line)
            try:
                re.compile(pattern)
            except re.error as e:
                raise TrainingDataError(
                    f"Regex '{pattern}' of '{name}' is invalid: {e}.", self.filename, ex_line,
                    fix="Fix the regular expression (Python 're' syntax).",
                ) from e
            self.data.regex_features.append({"name": name, "pattern": pattern})

    def _parse_lookup(self, item: dict[str, Any], line: int | None) -> None:
        name = str(item[KEY_LOOKUP])
        source = item.get("file")
        examples = item.get(KEY_EXAMPLES)
        if source is None and isinstance(examples, str) and "\n" not in examples.strip() \
                and examples.strip().endswith(".txt"):
            source = examples.strip()
        if source is not None:
            elements = self._read_lookup_file(str(source), name, line)
        else:
            elements = [
                self._require_string(e, name, ex_line).strip()
                for e, ex_line, _ in self._examples(item, name, line)
            ]
        self.data.lookup_tables = _merge_lookups(
            self.data.lookup_tables + [{"name": name, "elements": [e for e in elements if e]}]
        )

    def _read_lookup_file(self, source: str, name: str, line: int | None) -> list[str]:
        candidates = [Path(source)]
        if self.filename and not Path(source).is_absolute():
            candidates.insert(0, Path(self.filename).parent / source)
        for path in candidates:
            if path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                return [ln.strip().removeprefix("- ").strip() for ln in lines if ln.strip()]
        raise TrainingDataError(
            f"Lookup table '{name}' refers to '{source}', which does not exist.",
            self.filename,
            line,
            fix="Give a path relative to this YAML file, or list the elements inline.",
        )


def _validate(data: TrainingData) -> None:
    """Warnings Rasa's validator gives: thin intents and contradictory examples."""
    counts = data.number_of_examples_per_intent
    first_line: dict[str, Message] = {}
    for m in data.training_examples:
        if m.intent and m.intent not in first_line:
            first_line[m.intent] = m
    for intent, count in sorted(counts.items()):
        if count < 2:
            m = first_line[intent]
            _warn(
                f"Intent '{intent}' has only {count} training example; "
                "add more so it can be learned.",
                m.source,
                m.line,
            )
    seen: dict[str, Message] = {}
    for m in data.training_examples:
        if not m.intent:
            continue
        key = m.text.strip().lower()
        other = seen.get(key)
        if other is None:
            seen[key] = m
        elif other.intent != m.intent:
            _warn(
                f"Example '{m.text}' appears under intent '{other.intent}' "
                f"({other.source}:{other.line}) and under intent '{m.intent}'.",
                m.source,
                m.line,
            )
