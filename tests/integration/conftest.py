"""Fixtures for end-to-end runs: copy a Rasa project into tmp, train it once per session."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from bot.shared.yaml_io import read_yaml_file, to_plain, write_yaml

logger = logging.getLogger(__name__)

TESTS_DATA = Path(__file__).resolve().parent.parent / "data"
EXAMPLE_ACTIONS = TESTS_DATA / "rasa_example_actions"
OWN_PROJECTS = TESTS_DATA / "projects"

ConfigEdit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ProjectCase:
    """One Rasa project to train and test.

    ``source`` is a folder (Rasa's examples are read-only in ../shared, so they are always
    copied); ``actions`` names a package under tests/data/rasa_example_actions/ that is
    copied next to it as ``actions/``; ``config_edit`` changes the copied config.yml and
    must say why in its docstring; ``test_stories`` are paths relative to the copy (or
    absolute) that ``test core`` runs on.
    """

    name: str
    source: Path
    test_stories: tuple[str, ...]
    actions: str | None = None
    config_edit: ConfigEdit | None = None


@dataclass(frozen=True)
class TrainedProject:
    root: Path
    model_path: Path
    train_seconds: float


def copy_project(case: ProjectCase, target: Path) -> Path:
    """Copy the project (without old models/results) and its action package into ``target``."""
    shutil.copytree(case.source, target, ignore=shutil.ignore_patterns("models", "results", "__pycache__", ".rasa"))
    if case.actions is not None:
        actions_dir = target / "actions"
        if actions_dir.exists():
            shutil.rmtree(actions_dir)
        shutil.copytree(EXAMPLE_ACTIONS / case.actions / "actions", actions_dir,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if case.config_edit is not None:
        config_path = target / "config.yml"
        config = to_plain(read_yaml_file(config_path))
        case.config_edit(config)
        write_yaml(config, config_path)
    return target


@pytest.fixture(scope="session")
def trained_projects(tmp_path_factory: pytest.TempPathFactory) -> Callable[[ProjectCase], TrainedProject]:
    """Train each project at most once per session (the story tests and the agent tests share it)."""
    from bot.model.training import train

    cache: dict[str, TrainedProject] = {}

    def get(case: ProjectCase) -> TrainedProject:
        if case.name not in cache:
            root = copy_project(case, tmp_path_factory.mktemp(case.name) / "project")
            result = train(root=root, out=root / "models")
            assert result.model_path is not None and Path(result.model_path).is_file()
            logger.info("Trained %s in %.1f s", case.name, result.seconds)
            cache[case.name] = TrainedProject(root, Path(result.model_path), result.seconds)
        return cache[case.name]

    return get
