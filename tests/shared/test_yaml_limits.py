"""YAML limits: alias bombs, deep nesting and size are refused before the data is built."""
from __future__ import annotations

import pytest

from bot.shared.exceptions import YamlError
from bot.shared.yaml_io import HTTP_YAML_LIMITS, YamlLimits, read_yaml, to_plain


def billion_laughs(levels: int = 10, width: int = 9) -> str:
    """The classic alias bomb: each level repeats the one before ``width`` times (9**10 nodes)."""
    lines = ["a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_of_550_bytes_is_refused_with_file_and_line():
    bomb = billion_laughs()
    assert len(bomb.encode()) <= 550
    with pytest.raises(YamlError) as info:
        read_yaml(bomb, "<request body>", HTTP_YAML_LIMITS)
    message = str(info.value)
    assert message.startswith("<request body>:")
    assert "aliases" in message and "Fix:" in message


def test_project_files_are_bounded_too():
    with pytest.raises(YamlError, match="expands to more than"):
        read_yaml(billion_laughs(), "domain.yml")


def test_alias_expansion_is_counted_exactly():
    text = "a: &x [1, {b: 2}]\nc: *x\nd: [*x, *x]\n"
    assert to_plain(read_yaml(text, "f", YamlLimits(max_nodes=25)))["d"] == [[1, {"b": 2}], [1, {"b": 2}]]
    with pytest.raises(YamlError, match="more than 24 nodes"):
        read_yaml(text, "f", YamlLimits(max_nodes=24))


def test_too_many_aliases_name_the_line():
    text = "base: &b 1\n" + "".join(f"k{i}: *b\n" for i in range(101))
    with pytest.raises(YamlError) as info:
        read_yaml(text, "body.yml", HTTP_YAML_LIMITS)
    assert info.value.line == 102 and "more than 100 aliases" in str(info.value)


def test_deep_nesting_is_a_yaml_error_not_a_recursion_error():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(YamlError, match="deeper than 64"):
        read_yaml(deep, "body.yml", HTTP_YAML_LIMITS)
    with pytest.raises(YamlError, match="nested too deeply"):
        read_yaml(deep, "file.yml")


def test_size_cap_names_the_limit():
    with pytest.raises(YamlError, match="the limit is 10 bytes"):
        read_yaml("a: 12345678901\n", "body.yml", YamlLimits(max_bytes=10))


def test_ordinary_anchors_still_work():
    text = "defaults: &d {retries: 3}\nprod:\n  <<: *d\n  host: x\n"
    assert to_plain(read_yaml(text, "f", HTTP_YAML_LIMITS))["prod"] == {"retries": 3, "host": "x"}
