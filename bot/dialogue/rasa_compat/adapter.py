"""Runs a policy written against Rasa 3's API inside kefu's policy ensemble.

Rasa builds such a policy with ``create(config, model_storage, resource, context)``,
calls ``train(trackers, domain)`` (the policy persists itself into its resource),
and later ``load(...)`` and ``predict_action_probabilities(tracker, domain,
rule_only_data=...)``. :class:`RasaGraphPolicy` is a kefu :class:`Policy` that does
exactly that and keeps the policy's resource folder inside kefu's model archive.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from bot.dialogue.policies.policy import (
    DEFAULT_POLICY_PRIORITY,
    METADATA_FILE,
    POLICY_PRIORITY,
    Policy,
    PolicyPrediction,
    SupportedData,
    class_path,
    import_class,
)
from bot.dialogue.rasa_compat.engine import ExecutionContext, LocalModelStorage, Resource
from bot.shared.exceptions import ConfigError, UnknownComponentError

RASA_CLASS_KEY = "rasa_class"  # the project's class path, kept in the persisted config
RESOURCE_DIR = "rasa_resource"  # the policy's model storage inside kefu's policy folder


def is_rasa_api_policy(cls: Any) -> bool:
    from bot.dialogue.rasa_compat.policy import Policy as RasaPolicy

    return isinstance(cls, type) and issubclass(cls, RasaPolicy)


class RasaGraphPolicy(Policy):
    """A Rasa-API policy class (``config.yml``: ``- name: policy.memoization.MemoizationPolicy``)."""

    def __init__(self, config: Optional[dict[str, Any]] = None, filename: Optional[str] = None,
                 line: Optional[int] = None) -> None:
        given = {k: v for k, v in dict(config or {}).items() if k != "name"}
        path = str(given.pop(RASA_CLASS_KEY, "") or "")
        if not path:
            raise ConfigError("A Rasa-API policy needs its class path.", filename, line,
                              fix="Name the class in config.yml, e.g. '- name: policy.module.MyPolicy'.")
        from bot.dialogue.rasa_compat import install

        install()
        try:
            rasa_class = import_class(path)
        except ImportError as e:
            raise UnknownComponentError(f"Cannot import policy '{path}': {e}", filename, line,
                                        fix="Run kefu from the project's root so its modules import.") from e
        if not is_rasa_api_policy(rasa_class):
            raise UnknownComponentError(f"'{path}' is not a Rasa policy class.", filename, line,
                                        fix="Subclass rasa.core.policies.policy.Policy.")
        self.rasa_class_path = path
        self.rasa_class = rasa_class
        # Rasa's graph passes the class's defaults updated with config.yml's options.
        self.config = {**rasa_class.get_default_config(), **given}
        self.priority = int(self.config.get(POLICY_PRIORITY, DEFAULT_POLICY_PRIORITY))
        self._rule_only_data: dict[str, Any] = {}
        self._resource = Resource(rasa_class.__name__)
        self._storage_root: Optional[Path] = None
        self.inner: Any = None

    def supported_data(self) -> SupportedData:  # type: ignore[override]
        return self.rasa_class.supported_data()

    def _context(self) -> ExecutionContext:
        return ExecutionContext(node_name=f"policy_{self.rasa_class.__name__}")

    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> None:
        self._storage_root = Path(tempfile.mkdtemp(prefix="kefu-rasa-policy-"))
        self.inner = self.rasa_class.create(dict(self.config), LocalModelStorage(self._storage_root),
                                            self._resource, self._context())
        self.inner.train(training_trackers, domain)

    def predict_action_probabilities(self, tracker: Any, domain: Any,
                                     rule_only_data: Optional[dict[str, Any]] = None,
                                     **kwargs: Any) -> PolicyPrediction:
        if self.inner is None:
            raise RuntimeError(f"{self.rasa_class_path} was asked to predict before it was trained or loaded.")
        if rule_only_data is None:
            rule_only_data = self._rule_only_data
        prediction = self.inner.predict_action_probabilities(tracker, domain, rule_only_data=rule_only_data)
        if not isinstance(prediction, PolicyPrediction):
            raise TypeError(f"{self.rasa_class_path}.predict_action_probabilities returned "
                            f"{type(prediction).__name__}, not a PolicyPrediction (use self._prediction(...)).")
        return prediction

    def persist(self, path: str | Path) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        data = {"class": class_path(type(self)), "config": {**self.config, RASA_CLASS_KEY: self.rasa_class_path},
                "rule_only_data": self._rule_only_data, "data": {}}
        (directory / METADATA_FILE).write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True),
                                               encoding="utf-8")
        if self._storage_root is not None:
            target = directory / RESOURCE_DIR
            if target.resolve() != self._storage_root.resolve():
                LocalModelStorage(self._storage_root).copy_resource_to(self._resource, target)

    def _load_extra(self, path: Path) -> None:
        self._storage_root = Path(path) / RESOURCE_DIR
        self.inner = self.rasa_class.load(dict(self.config), LocalModelStorage(self._storage_root),
                                          self._resource, self._context())

    def __del__(self) -> None:
        root = getattr(self, "_storage_root", None)
        if root is not None and root.name.startswith("kefu-rasa-policy-") and root.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"RasaGraphPolicy({self.rasa_class_path}, priority={self.priority})"
