"""``handoff.store_url`` may name the database password as ${VAR} (docs/database.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.handoff.config import HandoffConfig
from bot.shared.exceptions import ConfigError


def _project(tmp_path: Path) -> Path:
    (tmp_path / "endpoints.yml").write_text(
        "handoff:\n  store_url: postgresql://kefu:${KEFU_TEST_DB_PASSWORD}@db.internal/kefu\n", encoding="utf-8")
    return tmp_path


def test_store_url_expands_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_HANDOFF_SECRET", "x" * 40)
    monkeypatch.setenv("KEFU_TEST_DB_PASSWORD", "pa55-w0rd")
    config = HandoffConfig.from_project(_project(tmp_path))
    assert config.store_url == "postgresql://kefu:pa55-w0rd@db.internal/kefu"


def test_store_url_with_a_missing_variable_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_HANDOFF_SECRET", "x" * 40)
    monkeypatch.delenv("KEFU_TEST_DB_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as info:
        HandoffConfig.from_project(_project(tmp_path))
    assert "KEFU_TEST_DB_PASSWORD" in str(info.value)
