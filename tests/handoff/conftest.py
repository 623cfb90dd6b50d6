"""Fixtures for handoff tests: the tiny handoff bot trained once, agents wired to a real SQLite file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.handoff.helpers import make_config

PROJECT = Path(__file__).resolve().parent / "data" / "project"


@pytest.fixture(scope="session")
def handoff_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.model.training import train

    return train(root=PROJECT, out=tmp_path_factory.mktemp("handoff-model")).model_path


@pytest.fixture(scope="session")
def handoff_config_dict() -> dict[str, Any]:
    from bot.shared.yaml_io import read_yaml_file, to_plain

    return to_plain(read_yaml_file(PROJECT / "config.yml"))["handoff"]


@pytest.fixture
def config_factory(handoff_config_dict: dict[str, Any], tmp_path: Path) -> Any:
    def factory(**overrides: Any) -> Any:
        return make_config(handoff_config_dict, tmp_path / "handoff.db", **overrides)
    return factory
