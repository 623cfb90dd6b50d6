"""YAML reading that keeps line numbers, so every error can name file and line.

Uses ruamel.yaml's round-trip loader: mappings and sequences carry ``.lc``
(0-based line/column). ``line_of`` turns that into 1-based lines for messages.

Every parse is bounded (``YamlLimits``): a document's size, how many aliases it
uses and how many nodes it would have once every alias is expanded. The loader
shares aliased nodes, so a 550-byte "billion laughs" document loads quickly but
explodes in whatever walks it next (``to_plain``, JSON, training); the expansion
is therefore counted on the event stream, in time linear in the text, before the
document is built. YAML that arrives over HTTP gets the tight ``HTTP_YAML_LIMITS``.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

from bot.shared.exceptions import YamlError

logger = logging.getLogger(__name__)

YAML_EXTENSIONS = (".yml", ".yaml")


def _loader() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


@dataclass(frozen=True)
class YamlLimits:
    """How much one YAML document may cost; ``None`` means no cap on that measure.

    ``max_aliases`` counts ``*alias`` uses; ``max_nodes`` counts scalars and
    collections after every alias is expanded (what a walk of the data visits).
    """

    max_bytes: int | None = None
    max_aliases: int | None = None
    max_nodes: int | None = 5_000_000
    max_depth: int | None = None


# Project files (config, domain, training data on disk): no size cap, aliases allowed,
# but no document may expand past a few million nodes.
FILE_YAML_LIMITS = YamlLimits()
# YAML from a request body (POST /model/train, /model/test/intents, knowledge uploads).
HTTP_YAML_LIMITS = YamlLimits(max_bytes=16 * 1024 * 1024, max_aliases=100, max_nodes=1_000_000,
                              max_depth=64)


def read_yaml(
    text: str, filename: str | Path = "<string>", limits: YamlLimits = FILE_YAML_LIMITS
) -> Any:
    """Parse YAML text within ``limits``; errors become ``YamlError`` with file and line.

    CPU-bound for large documents: callers on the event loop use ``run_blocking``.
    """
    try:
        try:
            check_yaml_limits(text, filename, limits)
            return _loader().load(text)
        except MarkedYAMLError as e:
            blanked = _blank_space_only_lines(text, e, filename)
            if blanked is None:
                raise
            check_yaml_limits(blanked, filename, limits)
            return _loader().load(blanked)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "invalid YAML"
        raise YamlError(
            f"Invalid YAML: {problem}.",
            filename,
            line,
            fix="Check indentation, colons and quoting around this line.",
        ) from e
    except RecursionError as e:
        raise YamlError(
            "The YAML document is nested too deeply to read.",
            filename,
            fix="Flatten the data; kefu's files nest a few levels at most.",
        ) from e
    except YAMLError as e:  # pragma: no cover - unmarked errors are rare
        raise YamlError(f"Invalid YAML: {e}", filename) from e


_SPACE_ONLY_LINE_PROBLEM = "more indented follow up line than first in a block scalar"


def _blank_space_only_lines(text: str, error: MarkedYAMLError, filename: str | Path) -> str | None:
    """Rasa 3.6's YAML reader accepts a block scalar (``examples: |``) whose first line
    holds only spaces; ruamel 0.18+ refuses it. Read such lines as empty lines, with a
    warning naming them (None when the error is another one)."""
    if _SPACE_ONLY_LINE_PROBLEM not in f"{error.problem} {error.context}":
        return None
    lines = text.split("\n")
    spaced = [i for i, line in enumerate(lines) if line and not line.strip(" \t\r")]
    if not spaced:
        return None
    mark = error.problem_mark or error.context_mark
    before = [i for i in spaced if mark is None or i < mark.line]
    shown = (before[-1] if before else spaced[0]) + 1
    logger.warning(
        "%s:%d: a line holding only spaces opens a block scalar; it is read as an empty line "
        "(as Rasa 3.6 does). Fix: remove the spaces.", filename, shown,
    )
    for i in spaced:
        lines[i] = ""
    return "\n".join(lines)


def check_yaml_limits(text: str, filename: str | Path, limits: YamlLimits) -> None:
    """Refuse a document over ``limits`` before it is built (``YamlError`` naming the line).

    Walks the parser's events once: each anchored node records its expanded size and
    each alias adds the size of the node it names, so the count is exact and linear.
    """
    if limits.max_bytes is not None:
        size = len(text.encode("utf-8"))
        if size > limits.max_bytes:
            raise YamlError(
                f"The YAML document is {size} bytes; the limit is {limits.max_bytes} bytes.",
                filename,
                fix="Send less data per request (split training data or knowledge files).",
            )
    counts_aliases = limits.max_aliases is not None or limits.max_nodes is not None
    if limits.max_depth is None and not (counts_aliases and "*" in text):
        return  # no alias can appear without '*': nothing expands
    anchored: dict[str, int] = {}  # anchor -> expanded size of its node
    stack: list[list[Any]] = []  # [anchor, expanded size so far] of each open collection
    expanded = aliases = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, CollectionStartEvent):
            stack.append([event.anchor, 1])
            expanded += 1
            if limits.max_depth is not None and len(stack) > limits.max_depth:
                raise _limit_error(
                    f"The YAML document nests deeper than {limits.max_depth} levels.", filename, event,
                    fix="Flatten the data; training data and knowledge files nest a few levels at most.")
            continue
        if isinstance(event, AliasEvent):
            aliases += 1
            if limits.max_aliases is not None and aliases > limits.max_aliases:
                raise _limit_error(
                    f"The YAML document uses more than {limits.max_aliases} aliases (*name).",
                    filename, event)
            size = anchored.get(event.anchor, 1)
            expanded += size
        elif isinstance(event, ScalarEvent):
            size = 1
            expanded += 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, CollectionEndEvent) and stack:
            anchor, size = stack.pop()
            if anchor is not None:
                anchored[anchor] = size
        else:
            continue
        if stack:  # the enclosing collection (after a pop: the parent)
            stack[-1][1] += size
        if limits.max_nodes is not None and expanded > limits.max_nodes:
            raise _limit_error(
                f"The YAML document expands to more than {limits.max_nodes} nodes once its "
                "aliases (*name) are resolved (an alias bomb?).", filename, event)


def _limit_error(
    message: str,
    filename: str | Path,
    event: Any,
    fix: str = "Write the data out instead of repeating anchors (&name) through aliases (*name).",
) -> YamlError:
    mark = getattr(event, "start_mark", None)
    return YamlError(message, filename, mark.line + 1 if mark is not None else None, fix=fix)


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise YamlError("File not found.", path) from e
    except UnicodeDecodeError as e:
        raise YamlError("File is not valid UTF-8.", path) from e
    return read_yaml(text, path)


def line_of(node: Any, key: Any = None, index: int | None = None) -> int | None:
    """1-based line of ``node`` (or of ``node[key]`` / ``node[index]``), if known."""
    try:
        if key is not None and isinstance(node, CommentedMap):
            return node.lc.key(key)[0] + 1
        if index is not None and isinstance(node, CommentedSeq):
            return node.lc.item(index)[0] + 1
        if hasattr(node, "lc"):
            return node.lc.line + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return None


def to_plain(data: Any) -> Any:
    """Convert ruamel containers and scalars to plain Python types (for hashing, JSON)."""
    if isinstance(data, dict):
        return {to_plain(k) if isinstance(k, (int, float, bool)) else str(k): to_plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_plain(v) for v in data]
    if isinstance(data, bool):
        return bool(data)
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data)
    if isinstance(data, str):
        return str(data)
    return data


def dump_yaml(data: Any) -> str:
    """Serialise plain data as block-style YAML (UTF-8, unicode kept)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def write_yaml(data: Any, path: str | Path) -> None:
    Path(path).write_text(dump_yaml(data), encoding="utf-8")


def is_yaml_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in YAML_EXTENSIONS


def yaml_files(path: str | Path) -> list[Path]:
    """A YAML file, or all YAML files under a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_file():
        return [path] if is_yaml_file(path) else []
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_yaml_file(p))
    return []
