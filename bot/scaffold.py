"""``python -m bot init``: copy the starter project."""
from __future__ import annotations

import shutil
from pathlib import Path

from bot.shared.exceptions import ConfigError

STARTER = Path(__file__).parent / "templates" / "starter"


def init_project(path: str | Path) -> Path:
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    for existing in ("config.yml", "domain.yml"):
        if (target / existing).exists():
            raise ConfigError(
                f"'{existing}' already exists; not overwriting a project.",
                target / existing,
                fix="Run `python -m bot init` in an empty folder.",
            )
    for item in STARTER.rglob("*"):
        if item.is_dir() or "__pycache__" in item.parts:
            continue
        dest = target / item.relative_to(STARTER)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item, dest)
    return target
