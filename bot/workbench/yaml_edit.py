"""Additions to a project's Rasa YAML that leave every existing byte where it was.

ruamel.yaml's round-trip loader finds where the new line belongs (its line and column
information of each node); the new text is inserted there in the file's own indentation,
and the result is loaded again and compared with the expected data (the old data plus the
addition), so a write never changes what an existing line means. A full round-trip dump
would reformat files whose sequences are indented in more than one style (the demo's
stories and rules are), so the git diff would no longer be only the new lines.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import to_plain

_PLAIN_SAFE = re.compile(r"^[^\s\-?:,\[\]{}#&*!|>'\"%@`][^#]*$")


@dataclass(frozen=True)
class Edit:
    """One addition: the file, the 1-based line the new text starts at, and the text."""

    path: Path
    line: int
    text: str


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def load(text: str, path: Path) -> Any:
    try:
        return _yaml().load(text)
    except Exception as e:  # ruamel's errors carry the position in their text
        raise ConfigError(f"Cannot read YAML: {e}", str(path), fix="Fix the file's syntax, then retry.") from e


def scalar(text: str) -> str:
    """``text`` as a one-line YAML scalar: plain when that reads back the same, else JSON-quoted."""
    if text and _PLAIN_SAFE.match(text) and ": " not in text and not text.endswith(":") and text == text.strip():
        loaded = YAML(typ="safe").load(text)
        if loaded == text:
            return text
    return json.dumps(text, ensure_ascii=False)


def _line_start_offsets(text: str) -> list[int]:
    offsets = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            offsets.append(i + 1)
    return offsets


def insert_lines(text: str, after_line: int, new: str) -> str:
    """Insert ``new`` (whole lines) after 0-based line ``after_line`` (-1: at the top)."""
    if not new.endswith("\n"):
        new += "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n") and after_line >= len(lines) - 1:
        lines[-1] += "\n"
    lines[after_line + 1:after_line + 1] = [new]
    return "".join(lines)


def last_content_line(text: str, start: int, end: int) -> int:
    """The last 0-based line in ``[start, end)`` that is neither blank nor only a comment."""
    lines = text.splitlines()
    for i in range(min(end, len(lines)) - 1, start - 1, -1):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            return i
    return start


def _next_line_after(seq_parent: Any, key_or_index: Any, text: str) -> int:
    """The 0-based line where whatever follows ``seq_parent[key_or_index]`` begins (or EOF)."""
    total = len(text.splitlines())
    if isinstance(seq_parent, CommentedSeq):
        if key_or_index + 1 < len(seq_parent):
            return seq_parent.lc.item(key_or_index + 1)[0]
    elif isinstance(seq_parent, CommentedMap):
        keys = list(seq_parent.keys())
        i = keys.index(key_or_index)
        if i + 1 < len(keys):
            return seq_parent.lc.key(keys[i + 1])[0]
    return total


def apply_checked(path: Path, original: str, new_text: str, expect: Callable[[Any], Any]) -> str:
    """Load ``new_text`` and require it to equal ``expect(plain data of original)``."""
    before = to_plain(load(original, path))
    wanted = expect(copy.deepcopy(before))
    after = to_plain(load(new_text, path))
    if after != wanted:
        raise ConfigError("The addition would change existing data; nothing was written.", str(path),
                          fix="Report this file's layout; add the line by hand meanwhile.")
    return new_text


# --------------------------------------------------------------------------- NLU examples


def _find_item(seq: Any, key: str, value: str) -> int | None:
    if not isinstance(seq, CommentedSeq):
        return None
    for i, item in enumerate(seq):
        if isinstance(item, CommentedMap) and item.get(key) == value:
            return i
    return None


def nlu_intent_index(data: Any, intent: str) -> int | None:
    if not isinstance(data, CommentedMap):
        return None
    return _find_item(data.get("nlu"), "intent", intent)


def add_nlu_example(path: Path, original: str, intent: str, example: str) -> tuple[str, Edit]:
    """``- example`` appended to ``intent``'s examples block in this file (or a new intent item at the end)."""
    if "\n" in example or not example.strip():
        raise ConfigError("An example must be one non-empty line.", str(path), fix="Send a single line of text.")
    data = load(original, path)
    index = nlu_intent_index(data, intent)
    lines = original.splitlines()
    if index is not None:
        item = data["nlu"][index]
        examples = item.get("examples")
        if not isinstance(examples, str):
            raise ConfigError(f"Intent '{intent}' has no examples block.", str(path), fix="Give it 'examples: |'.")
        key_line = item.lc.key("examples")[0]
        end = _next_line_after(item, "examples", original)
        if end == len(lines) or end <= key_line:  # the block runs to the next nlu item or the end
            end = _next_line_after(data["nlu"], index, original)
            if end == len(lines) and list(data.keys())[-1] != "nlu":
                end = _next_line_after(data, "nlu", original)
        last = last_content_line(original, key_line + 1, end)
        if last <= key_line:
            raise ConfigError(f"Intent '{intent}' has an empty examples block.", str(path),
                              fix="Add one example by hand first.")
        indent = re.match(r"\s*", lines[last]).group(0)
        new_line = f"{indent}- {example}"
        new_text = insert_lines(original, last, new_line)

        def expect(plain: Any) -> Any:
            block = plain["nlu"][index]["examples"]
            plain["nlu"][index]["examples"] = block + ("" if block.endswith("\n") else "\n") + f"- {example}\n"
            return plain

        return apply_checked(path, original, new_text, expect), Edit(path, last + 2, new_line)
    nlu = data.get("nlu") if isinstance(data, CommentedMap) else None
    if not isinstance(nlu, CommentedSeq) or not nlu:
        raise ConfigError("The file has no 'nlu:' items to add to.", str(path), fix="Pick an NLU file with intents.")
    last_index = len(nlu) - 1
    key_col = nlu.lc.item(last_index)[1]  # where the item's content starts, after "- "
    block = (f"{' ' * max(key_col - 2, 0)}- intent: {scalar(intent)}\n{' ' * key_col}examples: |\n"
             f"{' ' * (key_col + 2)}- {example}\n")
    end = _next_line_after(nlu, last_index, original)
    if end == len(lines) and list(data.keys())[-1] != "nlu":
        end = _next_line_after(data, "nlu", original)
    last = last_content_line(original, nlu.lc.item(last_index)[0], end)
    new_text = insert_lines(original, last, block)

    def expect_new(plain: Any) -> Any:
        plain["nlu"].append({"intent": intent, "examples": f"- {example}\n"})
        return plain

    return apply_checked(path, original, new_text, expect_new), Edit(path, last + 2, block)


# --------------------------------------------------------------------------- domain intents


def add_domain_intent(path: Path, original: str, intent: str) -> tuple[str, Edit | None]:
    """``- intent`` appended to the domain's ``intents:`` list (nothing when it is there)."""
    data = load(original, path)
    intents = data.get("intents") if isinstance(data, CommentedMap) else None
    names = [next(iter(i)) if isinstance(i, dict) else i for i in (intents or [])]
    if intent in names:
        return original, None
    if not isinstance(intents, CommentedSeq) or not intents:
        raise ConfigError("The domain has no 'intents:' list to add to.", str(path), fix="Add 'intents:' by hand.")
    last_index = len(intents) - 1
    col = intents.lc.item(last_index)[1]
    end = _next_line_after(intents, last_index, original)
    if end == len(original.splitlines()):
        end = _next_line_after(data, "intents", original)
    last = last_content_line(original, intents.lc.item(last_index)[0], end)
    line = f"{' ' * max(col - 2, 0)}- {scalar(intent)}"
    new_text = insert_lines(original, last, line)

    def expect(plain: Any) -> Any:
        plain["intents"].append(intent)
        return plain

    return apply_checked(path, original, new_text, expect), Edit(path, last + 2, line)


# --------------------------------------------------------------------------- knowledge base


def add_faq_question(path: Path, original: str, entry_id: str, language: str, question: str) -> tuple[str, Edit]:
    """``question`` appended to entry ``entry_id``'s ``questions: {language: [...]}``."""
    data = load(original, path)
    entries = data.get("entries") if isinstance(data, CommentedMap) else None
    index = _find_item(entries, "id", entry_id)
    if index is None:
        raise ConfigError(f"No FAQ entry '{entry_id}' in this file.", str(path), fix="Pick an existing entry id.")
    questions = entries[index].get("questions")
    if not isinstance(questions, CommentedMap) or not isinstance(questions.get(language), CommentedSeq) \
            or not questions[language]:
        raise ConfigError(f"FAQ entry '{entry_id}' has no '{language}' questions list.", str(path),
                          fix=f"Add 'questions: {{{language}: [...]}}' to the entry by hand first.")
    seq = questions[language]
    last_index = len(seq) - 1
    line_no, col = seq.lc.item(last_index)
    if seq.fa.flow_style():
        raise ConfigError(f"FAQ entry '{entry_id}' lists its '{language}' questions inline.", str(path),
                          fix="Write the list one question per line.")
    line = f"{' ' * max(col - 2, 0)}- {scalar(question)}"
    new_text = insert_lines(original, line_no, line)

    def expect(plain: Any) -> Any:
        plain["entries"][index]["questions"][language].append(question)
        return plain

    return apply_checked(path, original, new_text, expect), Edit(path, line_no + 2, line)


# --------------------------------------------------------------------------- test stories


def story_block(name: str, steps: list[dict[str, Any]], item_col: int = 0, key_col: int = 2) -> str:
    """A ``- story:`` item in Rasa's test-story format, indented like the file it goes into."""
    pad, kpad = " " * item_col, " " * key_col
    out = [f"{pad}- story: {scalar(name)}", f"{kpad}steps:"]
    for step in steps:
        first = True
        for key, value in step.items():
            lead = f"{kpad}- " if first else f"{kpad}  "
            rendered = scalar(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.append(f"{lead}{key}: {rendered}")
            first = False
    return "\n".join(out) + "\n"


def add_test_story(path: Path, original: str, name: str, steps: list[dict[str, Any]]) -> tuple[str, Edit]:
    """The story appended to ``stories:`` of a test-story file (created when ``original`` is empty)."""
    if not original.strip():
        header = 'version: "3.1"\n\n# Stories saved from the kefu trainer workbench.\nstories:\n'
        new_text = header + story_block(name, steps)
        after = to_plain(load(new_text, path))
        if after.get("stories") != [{"story": name, "steps": steps}]:
            raise ConfigError("The story did not read back as written.", str(path), fix="Report the story.")
        return new_text, Edit(path, 5, new_text)
    data = load(original, path)
    stories = data.get("stories") if isinstance(data, CommentedMap) else None
    if not isinstance(stories, CommentedSeq) or not stories:
        raise ConfigError("The file has no 'stories:' list to add to.", str(path), fix="Name a test-story file.")
    last_index = len(stories) - 1
    line_no, col = stories.lc.item(last_index)  # col: where the item's content starts, after "- "
    end = _next_line_after(stories, last_index, original)
    if end == len(original.splitlines()) and list(data.keys())[-1] != "stories":
        end = _next_line_after(data, "stories", original)
    last = last_content_line(original, line_no, end)
    block = story_block(name, steps, max(col - 2, 0), col)
    new_text = insert_lines(original, last, block)

    def expect(plain: Any) -> Any:
        plain["stories"].append({"story": name, "steps": steps})
        return plain

    return apply_checked(path, original, new_text, expect), Edit(path, last + 2, block)
