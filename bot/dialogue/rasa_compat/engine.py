"""Rasa 3's graph-engine names that custom components and policies are written against.

kefu has no graph engine: a policy is built, trained and persisted by kefu's own
ensemble (``bot/dialogue/policies``). These small classes give a Rasa-API class the
objects its constructor, ``train`` and ``persist``/``load`` expect — a resource name,
a model storage folder, an execution context and the ``DefaultV1Recipe.register``
decorator — with Rasa's meaning.
"""
from __future__ import annotations

import enum
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


@dataclass(frozen=True)
class ExecutionContext:
    """What Rasa tells a component about the run (``rasa.engine.graph.ExecutionContext``)."""

    graph_schema: Any = None
    model_id: Optional[str] = None
    should_add_diagnostic_data: bool = False
    is_finetuning: bool = False
    node_name: Optional[str] = None


@dataclass(frozen=True)
class Resource:
    """A named piece of a trained model (``rasa.engine.storage.resource.Resource``)."""

    name: str
    output_fingerprint: str = field(default_factory=lambda: uuid.uuid4().hex)


class ModelStorage:
    """Where components persist what they learned (``rasa.engine.storage.storage.ModelStorage``)."""

    @contextmanager
    def write_to(self, resource: Resource) -> Iterator[Path]:
        raise NotImplementedError

    @contextmanager
    def read_from(self, resource: Resource) -> Iterator[Path]:
        raise NotImplementedError


class LocalModelStorage(ModelStorage):
    """One folder per resource under ``storage_path`` (Rasa's ``LocalModelStorage``)."""

    def __init__(self, storage_path: str | Path) -> None:
        self._storage_path = Path(storage_path)

    @classmethod
    def create(cls, storage_path: str | Path) -> "LocalModelStorage":
        return cls(storage_path)

    def _directory_for(self, resource: Resource) -> Path:
        return self._storage_path / resource.name

    @contextmanager
    def write_to(self, resource: Resource) -> Iterator[Path]:
        directory = self._directory_for(resource)
        directory.mkdir(parents=True, exist_ok=True)
        yield directory

    @contextmanager
    def read_from(self, resource: Resource) -> Iterator[Path]:
        directory = self._directory_for(resource)
        if not directory.is_dir():
            # Rasa raises ValueError here; custom ``load`` methods catch exactly that.
            raise ValueError(f"Resource '{resource.name}' does not exist in {self._storage_path}.")
        yield directory

    def copy_resource_to(self, resource: Resource, target: str | Path) -> None:
        """Copies one resource's folder into ``target`` (kefu's model folder)."""
        source = self._directory_for(resource)
        if source.is_dir():
            shutil.copytree(source, Path(target) / resource.name, dirs_exist_ok=True)


class GraphComponent:
    """Base of Rasa 3 components (``rasa.engine.graph.GraphComponent``)."""

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext, **kwargs: Any) -> "GraphComponent":
        raise NotImplementedError

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "GraphComponent":
        return cls.create(config, model_storage, resource, execution_context)

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    @staticmethod
    def supported_languages() -> Optional[list[str]]:
        return None

    @staticmethod
    def not_supported_languages() -> Optional[list[str]]:
        return None

    @staticmethod
    def required_packages() -> list[str]:
        return []


class DefaultV1Recipe:
    """Only the registration decorator of Rasa's default recipe: kefu reads ``config.yml``
    itself, so registering records the class and returns it unchanged."""

    class ComponentType(enum.Enum):
        MESSAGE_TOKENIZER = 0
        MESSAGE_FEATURIZER = 1
        INTENT_CLASSIFIER = 2
        ENTITY_EXTRACTOR = 3
        POLICY_WITHOUT_END_TO_END_SUPPORT = 4
        POLICY_WITH_END_TO_END_SUPPORT = 5
        MODEL_LOADER = 6

    registered: dict[str, type] = {}

    @classmethod
    def register(cls, component_types: Any, is_trainable: bool,
                 model_from: Optional[str] = None) -> Callable[[type], type]:
        def decorator(registered_class: type) -> type:
            cls.registered[registered_class.__name__] = registered_class
            return registered_class

        return decorator
