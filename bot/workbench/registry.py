"""The model registry: every model the workbench trained, its data version, its gate
comparison, and who activated it when; the active model's name is what every worker follows.

One JSON document (``.kefu/workbench/models.json``) under the project's file lock, written
atomically: each worker's follower task (``WorkbenchFeature``) reads the ``active`` name and
hot-swaps its agent when it changed, so an activation or a roll-back reaches every worker of
the host within ``follow_interval_s`` while the old model keeps answering (no downtime).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bot.shared.exceptions import BotError
from bot.workbench.annotate import atomic_write, project_lock


class RegistryError(BotError):
    """An activation the registry refuses (unknown model, blocked by the gate without override)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def data_version(root: Path) -> str:
    """A short digest of everything a model is trained from (config, domain, NLU, stories, FAQ)."""
    from bot.shared.importer import ProjectImporter, file_digest

    importer = ProjectImporter.from_paths(root)
    files = [importer.config_path] if importer.config_path else []
    files += importer.domain_files + importer.nlu_files + importer.story_files
    kb = root / "knowledge_base"
    if kb.is_dir():
        files += sorted(kb.rglob("*.y*ml")) + sorted(kb.rglob("*.csv"))
    return hashlib.sha1(file_digest([Path(f) for f in files]).encode()).hexdigest()[:12]


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.path = self.root / ".kefu" / "workbench" / "models.json"

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data.setdefault("models", [])
        data.setdefault("active", None)
        data.setdefault("history", [])
        return data

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(data, ensure_ascii=False, indent=1))

    def active(self) -> dict[str, Any] | None:
        data = self.read()
        return self._find(data, data["active"]) if data["active"] else None

    @staticmethod
    def _find(data: dict[str, Any], name: str) -> dict[str, Any] | None:
        return next((m for m in data["models"] if m["name"] == name), None)

    def get(self, name: str) -> dict[str, Any] | None:
        return self._find(self.read(), name)

    def add(self, model_path: str, trained_by: str, version: str, comparison: dict[str, Any] | None,
            detail: dict[str, Any] | None = None, holdout: float | None = None) -> dict[str, Any]:
        entry = {
            "name": Path(model_path).name.removesuffix(".tar.gz"),
            "path": str(model_path),
            "trained_at": time.time(),
            "trained_by": trained_by,
            "data_version": version,
            "holdout": holdout,
            "comparison": comparison,
            "gate_passed": None if comparison is None else bool(comparison.get("passed")),
            "detail": detail or {},
            "activations": [],
        }
        with project_lock(self.root):
            data = self.read()
            data["models"] = [m for m in data["models"] if m["name"] != entry["name"]] + [entry]
            self._write(data)
        return entry

    def activate(self, name: str, by: str, is_admin: bool, override: bool = False, action: str = "activate") -> dict[str, Any]:
        """Make ``name`` the active model; a gate failure needs an admin's explicit override."""
        with project_lock(self.root):
            data = self.read()
            entry = self._find(data, name)
            if entry is None:
                raise RegistryError(f"No model '{name}' in the registry.", 404)
            if not Path(entry["path"]).is_file():
                raise RegistryError(f"Model file {entry['path']} is gone; train again.", 409)
            if entry.get("gate_passed") is False and action == "activate":
                if not override:
                    raise RegistryError(f"Model '{name}' failed the gate "
                                        f"({len(entry['comparison'].get('regressions', []))} regression(s)); "
                                        "an admin may activate it with override=true.", 409)
                if not is_admin:
                    raise RegistryError("Only an admin may override the gate.", 403)
            previous = data["active"]
            record = {"action": action, "model": name, "previous": previous, "by": by, "at": time.time(),
                      "override": bool(override and entry.get("gate_passed") is False)}
            entry.setdefault("activations", []).append(record)
            data["active"] = name
            data["history"].append(record)
            self._write(data)
        return record

    def rollback(self, by: str) -> dict[str, Any]:
        """Back to the model that was active before the current one."""
        data = self.read()
        current = data["active"]
        previous = next((h["previous"] for h in reversed(data["history"])
                         if h["model"] == current and h["action"] == "activate" and h.get("previous")), None)
        if previous is None:
            raise RegistryError("Nothing to roll back to: no earlier active model.", 409)
        return self.activate(previous, by, is_admin=True, action="rollback")
