"""YAML reading that keeps line numbers, so every error can name file and line.

Uses ruamel.yaml's round-trip loader: mappings and sequences carry ``.lc``
(0-based line/column). ``line_of`` turns that into 1-based lines for messages.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from bot.shared.exceptions import YamlError

YAML_EXTENSIONS = (".yml", ".yaml")


def _loader() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def read_yaml(text: str, filename: str | Path = "<string>") -> Any:
    """Parse YAML text; syntax errors become ``YamlError`` with file and line."""
    try:
        return _loader().load(text)
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
    except YAMLError as e:  # pragma: no cover - unmarked errors are rare
        raise YamlError(f"Invalid YAML: {e}", filename) from e


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
