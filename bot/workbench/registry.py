"""The model registry: every model the workbench trained, its data version, its gate
comparison, and who activated it when; the active model's name is what every worker follows.

The rows live in SQL (``bot/workbench/registry_sql.py``: the tracker store's database by
default), so workers on several hosts share one registry: each worker's follower task
(``WorkbenchFeature``) reads the active name and hot-swaps its agent when it changed, so an
activation or a roll-back reaches every worker within ``follow_interval_s`` (at once with
Redis pub/sub) while the old model keeps answering (no downtime). A registry kept in
``.kefu/workbench/models.json`` by an older kefu is imported once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from bot.shared.exceptions import BotError
from bot.workbench.registry_sql import WorkbenchState, default_state_url

logger = logging.getLogger(__name__)


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
    def __init__(self, root: str | Path, state: WorkbenchState | None = None) -> None:
        self.root = Path(root).resolve()
        self.path = self.root / ".kefu" / "workbench" / "models.json"  # an older kefu's registry, imported once
        self.state = state if state is not None else WorkbenchState(default_state_url(self.root))
        self._adopted = False

    def _adopt(self) -> None:
        if self._adopted:
            return
        self._adopted = True
        if not self.path.is_file() or self.state.models():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for entry in data.get("models") or []:
            self.state.add_model(entry)
        for record in data.get("history") or []:
            self.state.activate(lambda _c, _active, r=record: {k: r.get(k) for k in
                                                                ("action", "model", "previous", "by", "at")}
                                | {"override": bool(record.get("override"))})
        logger.info("Workbench: imported %d models from %s into the SQL registry.", len(data.get("models") or []),
                    self.path)

    def read(self) -> dict[str, Any]:
        self._adopt()
        return {"models": self.state.models(), "active": self.state.active_name(), "history": self.state.history()}

    def active(self) -> dict[str, Any] | None:
        self._adopt()
        name = self.state.active_name()
        return self.state.model(name) if name else None

    def get(self, name: str) -> dict[str, Any] | None:
        self._adopt()
        return self.state.model(name)

    def add(self, model_path: str, trained_by: str, version: str, comparison: dict[str, Any] | None,
            detail: dict[str, Any] | None = None, holdout: float | None = None) -> dict[str, Any]:
        self._adopt()
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
        self.state.add_model(entry)
        return entry

    def activate(self, name: str, by: str, is_admin: bool, override: bool = False, action: str = "activate") -> dict[str, Any]:
        """Make ``name`` the active model; a gate failure needs an admin's explicit override."""
        self._adopt()

        def decide(connection: Any, previous: str | None) -> dict[str, Any]:
            entry = self.state.model(name, connection)
            if entry is None:
                raise RegistryError(f"No model '{name}' in the registry.", 404)
            if not Path(entry["path"]).is_file():
                raise RegistryError(f"Model file {entry['path']} is gone; train again.", 409)
            if entry.get("gate_passed") is False and action == "activate":
                if not override:
                    raise RegistryError(f"Model '{name}' failed the gate "
                                        f"({len((entry['comparison'] or {}).get('regressions', []))} regression(s)); "
                                        "an admin may activate it with override=true.", 409)
                if not is_admin:
                    raise RegistryError("Only an admin may override the gate.", 403)
            return {"action": action, "model": name, "previous": previous, "by": by, "at": time.time(),
                    "override": bool(override and entry.get("gate_passed") is False)}

        return self.state.activate(decide)

    def rollback(self, by: str) -> dict[str, Any]:
        """Back to the model that was active before the current one."""
        data = self.read()
        current = data["active"]
        previous = next((h["previous"] for h in reversed(data["history"])
                         if h["model"] == current and h["action"] == "activate" and h.get("previous")), None)
        if previous is None:
            raise RegistryError("Nothing to roll back to: no earlier active model.", 409)
        return self.activate(previous, by, is_admin=True, action="rollback")
