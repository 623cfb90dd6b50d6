"""``python -m bot data convert nlu``: Rasa 1/2 NLU data (Markdown, ``rasa_nlu_data`` JSON) to Rasa 3 YAML.

Reads what ``rasa data convert`` read before Rasa 3 dropped Markdown:

- Markdown: ``## intent:NAME`` (``faq/ask_x`` retrieval intents too), ``## synonym:VALUE``,
  ``## regex:NAME``, ``## lookup:NAME`` (inline elements, or one line naming a text file of
  elements), examples as ``- text`` with ``[text](entity)``, ``[text](entity:value)`` or
  ``[text]{"entity": ..., "value": ...}``; HTML comments are skipped.
- JSON: ``{"rasa_nlu_data": {"common_examples", "entity_synonyms", "regex_features",
  "lookup_tables"}}``.
- YAML (Rasa 2/3) to JSON with ``-f json``, as Rasa 3.6 still does.

Markdown stories and responses (``data convert core|responses``) are not converted: Rasa 3.6
removed that too; the error names the way (Rasa 2.8's converter, or writing the YAML).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError, TrainingDataError
from bot.shared.training_data.nlu import Message, TrainingData, _add_synonym, parse_training_example

_SECTION = re.compile(r"^##\s*(intent|synonym|regex|lookup)\s*:\s*(.+?)\s*$", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ITEM = re.compile(r"^\s*[-*+]\s+(.*)$")
NLU_SUFFIXES = (".md", ".markdown", ".json", ".yml", ".yaml")


def read_markdown_nlu(text: str, filename: str | Path = "<markdown>") -> TrainingData:
    """Rasa 1/2 Markdown NLU data as ``TrainingData``; errors name file:line."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    examples: list[Message] = []
    synonyms: dict[str, str] = {}
    regexes: list[dict[str, Any]] = []
    lookups: dict[str, list[str]] = {}
    section: tuple[str, str] | None = None
    base = Path(filename).parent if str(filename) != "<markdown>" else Path(".")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        header = _SECTION.match(line.strip())
        if header:
            section = (header.group(1).lower(), header.group(2))
            continue
        if line.lstrip().startswith("#"):
            section = None  # another heading (e.g. Rasa 1's `## story`): not NLU
            continue
        item = _ITEM.match(line)
        if section is None:
            continue
        kind, name = section
        if item is None:
            if kind == "lookup" and line.strip():  # a lookup given as a file of elements
                path = (base / line.strip())
                if not path.is_file():
                    raise TrainingDataError(f"Lookup table '{name}' names the file '{line.strip()}', which does "
                                            f"not exist.", filename, number,
                                            fix="Put the elements under the heading as '- element' lines.")
                lookups.setdefault(name, []).extend(
                    e.strip() for e in path.read_text(encoding="utf-8").splitlines() if e.strip())
                continue
            raise TrainingDataError(f"Line '{line.strip()}' under '## {kind}:{name}' is not a '- ' list item.",
                                    filename, number, fix="Start each example with '- '.")
        value = item.group(1).strip()
        if kind == "intent":
            examples.append(parse_training_example(value, name, filename, number))
        elif kind == "synonym":
            _add_synonym(synonyms, value, name, filename, number)
        elif kind == "regex":
            regexes.append({"name": name, "pattern": value})
        else:
            lookups.setdefault(name, []).append(value)
    _add_annotated_synonyms(examples, synonyms)
    return TrainingData(examples, synonyms, regexes,
                        [{"name": n, "elements": e} for n, e in lookups.items()])


def _add_annotated_synonyms(examples: list[Message], synonyms: dict[str, str]) -> None:
    for m in examples:
        for e in m.entities:
            span = m.text[e["start"]:e["end"]]
            if e.get("value") is not None and str(e["value"]) != span and span.lower() not in synonyms:
                _add_synonym(synonyms, span, e["value"], None, None)


def read_json_nlu(text: str, filename: str | Path = "<json>") -> TrainingData:
    """Rasa's ``rasa_nlu_data`` JSON as ``TrainingData``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise TrainingDataError(f"Not valid JSON: {e.msg}.", filename, e.lineno,
                                fix="Fix the JSON syntax at that line.") from e
    data = raw.get("rasa_nlu_data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        raise TrainingDataError("The JSON has no 'rasa_nlu_data' object.", filename,
                                fix="Rasa's JSON NLU format is {\"rasa_nlu_data\": {\"common_examples\": [...]}}.")
    examples: list[Message] = []
    for i, ex in enumerate(data.get("common_examples") or []):
        if not isinstance(ex, dict) or not isinstance(ex.get("text"), str):
            raise TrainingDataError(f"common_examples[{i}] has no 'text'.", filename,
                                    fix="Give every example a 'text' (and an 'intent').")
        fields: dict[str, Any] = {}
        intent = ex.get("intent")
        if intent:
            fields["intent"] = str(intent).split("/", 1)[0]
            if "/" in str(intent):
                fields["intent_response_key"] = str(intent)
        entities = []
        for e in ex.get("entities") or []:
            start, end = int(e["start"]), int(e["end"])
            entity = {"start": start, "end": end, "entity": str(e["entity"]),
                      "value": e.get("value", ex["text"][start:end])}
            for k in ("role", "group"):
                if e.get(k) is not None:
                    entity[k] = e[k]
            entities.append(entity)
        if entities:
            fields["entities"] = entities
        examples.append(Message(ex["text"], fields, str(filename)))
    synonyms: dict[str, str] = {}
    for s in data.get("entity_synonyms") or []:
        for original in s.get("synonyms") or []:
            _add_synonym(synonyms, original, s.get("value"), filename, None)
    _add_annotated_synonyms(examples, synonyms)
    regexes = [{"name": r["name"], "pattern": r["pattern"]} for r in data.get("regex_features") or []]
    lookups = []
    for t in data.get("lookup_tables") or []:
        elements = t.get("elements")
        if isinstance(elements, str):  # a file of elements, relative to the JSON file
            path = Path(filename).parent / elements
            elements = [e.strip() for e in path.read_text(encoding="utf-8").splitlines() if e.strip()]
        lookups.append({"name": t["name"], "elements": list(elements or [])})
    return TrainingData(examples, synonyms, regexes, lookups)


def read_any_nlu(path: Path) -> TrainingData:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".md", ".markdown"):
        return read_markdown_nlu(text, path)
    if path.suffix.lower() == ".json":
        return read_json_nlu(text, path)
    from bot.shared.training_data.nlu import load_nlu_data

    return load_nlu_data([path])


def as_rasa_json(data: TrainingData) -> dict[str, Any]:
    synonyms: dict[str, list[str]] = {}
    for original, value in data.entity_synonyms.items():
        synonyms.setdefault(value, []).append(original)
    return {"rasa_nlu_data": {
        "common_examples": [
            {"text": m.text, "intent": m.intent_response_key or m.intent or "",
             "entities": [{k: e[k] for k in ("start", "end", "value", "entity", "role", "group") if k in e}
                          for e in m.entities]}
            for m in data.training_examples
        ],
        "entity_synonyms": [{"value": v, "synonyms": s} for v, s in synonyms.items()],
        "regex_features": data.regex_features,
        "lookup_tables": data.lookup_tables,
    }}


def _input_files(data: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in data:
        p = Path(d)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in NLU_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"--data {d}: no such file or folder.", fix="Pass the Markdown/JSON NLU files to convert.")
    return files


def convert_nlu(data: list[str | Path], out: str | Path, fmt: str = "yaml") -> list[Path]:
    """Convert each input file into ``out`` (a folder; a file path when there is one input).

    ``name.md`` → ``name_converted.yml`` (Rasa's naming); ``-f json`` writes ``name_converted.json``.
    """
    if fmt not in ("yaml", "json"):
        raise ConfigError(f"-f {fmt}: unknown format.", fix="Pass -f yaml (Rasa 3) or -f json.")
    files = _input_files(data)
    if not files:
        raise ConfigError("No NLU files (.md, .json, .yml) to convert.", fix="Pass --data PATH.")
    out_path = Path(out)
    single_file_target = len(files) == 1 and out_path.suffix.lower() in (".yml", ".yaml", ".json")
    written: list[Path] = []
    for f in files:
        td = read_any_nlu(f)
        suffix = ".yml" if fmt == "yaml" else ".json"
        target = out_path if single_file_target else out_path / f"{f.stem}_converted{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "yaml":
            td.persist_yaml(target)
        else:
            target.write_text(json.dumps(as_rasa_json(td), ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(target)
    return written


NOT_CONVERTED = {
    "core": "Rasa 3.6 no longer converts Markdown stories either. Convert them with Rasa 2.8 "
            "(`rasa data convert core -f yaml --data data/stories.md --out data/`), or write them as YAML "
            "(`stories:` with `steps:` of `- intent:` / `- action:`); `python -m bot data validate` then checks them.",
    "responses": "Rasa 3.6 no longer converts Markdown responses either. Move them to the domain's "
                 "`responses:` (retrieval responses as `utter_faq/ask_x:`), or convert with Rasa 2.8 "
                 "(`rasa data convert responses`).",
    "config": "Rasa 3.6 dropped `data convert config`: write `rules:` and RulePolicy by hand "
              "(see Rasa's migration guide); kefu reads Rasa 3 config.yml as it is.",
}
