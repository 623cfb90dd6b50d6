"""The ``workbench:`` section of config.yml (or endpoints.yml); every key optional::

    workbench:
      low_confidence: 0.5        # a parse below this intent confidence goes to the inbox
      cluster_distance: 0.35     # cosine distance under which two inbox messages form one group
      max_conversations: 5000    # conversations the inbox and the browser scan per request
      new_intent_file: nlu_data/nlu/workbench.yml   # intents new to the project (default: beside the NLU data)
      test_stories: tests/test_workbench_stories.yml
      models_dir: models
      follow_interval_s: 2       # how often each worker checks the registry's active model
      notify_url: redis://localhost:6379/0  # activations announced at once (default: endpoints.yml's Redis)
      gate:
        holdout: 0.2             # share of NLU examples no workbench-trained model sees (by text hash)
        max_f1_drop: 0.05        # any intent's F1 falling more than this blocks activation
        max_accuracy_drop: 0.01  # overall held-out accuracy falling more than this blocks it too
        min_support: 2           # intents with fewer held-out examples are reported, not gated
        max_new_story_failures: 0  # test stories (tests/) the active model passes and the candidate fails
        kb_queries: tests/kb_queries.yml  # the FAQ report (`test kb --queries`) of both models
        max_kb_recall_drop: 0.02   # recall@1 on those queries may not fall more than this
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError

SECTION = "workbench"


@dataclass(frozen=True)
class GateConfig:
    holdout: float = 0.2
    max_f1_drop: float = 0.05
    max_accuracy_drop: float = 0.01
    min_support: int = 2
    max_new_story_failures: int = 0
    kb_queries: str = ""  # YAML of `queries: [{topic, text}]` (as `test kb --queries`); "": no KB report
    max_kb_recall_drop: float = 0.02


@dataclass(frozen=True)
class WorkbenchConfig:
    low_confidence: float = 0.5
    cluster_distance: float = 0.35
    max_conversations: int = 5000
    new_intent_file: str = ""  # "": workbench.yml beside the NLU data (nlu_data/nlu/, data/, ...)
    test_stories: str = "tests/test_workbench_stories.yml"
    models_dir: str = "models"
    follow_interval_s: float = 2.0
    notify_url: str = ""  # Redis for activation messages ("": endpoints.yml's Redis store, if any)
    state_url: str = ""  # SQL for registry/inbox/jobs ("": the SQL tracker store's database, else .kefu/workbench/)
    job_lease_s: float = 120.0  # a training job whose worker stops renewing for this long reads as failed
    # > 0: a retrain fine-tunes the active workbench-trained model for this fraction of the epochs
    # (`train --finetune --epoch-fraction`), falling back to a full training where it cannot
    finetune_epoch_fraction: float = 0.0
    gate: GateConfig = field(default_factory=GateConfig)

    @classmethod
    def from_section(cls, raw: Any, filename: str = "config.yml") -> "WorkbenchConfig":
        if raw is None:
            return cls()
        if hasattr(raw, "as_dict"):
            raw = raw.as_dict()
        if not isinstance(raw, dict):
            raise ConfigError(f"`{SECTION}:` must be a mapping, got {type(raw).__name__}.", filename,
                              fix="Write `workbench:` with keys like low_confidence, gate.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"Unknown key(s) under `{SECTION}:`: {', '.join(unknown)}.", filename,
                              fix=f"Valid keys: {', '.join(sorted(known))}.")
        values: dict[str, Any] = {}
        for name in ("low_confidence", "cluster_distance", "follow_interval_s", "job_lease_s"):
            if name in raw:
                values[name] = _number(raw[name], f"{SECTION}.{name}", filename, 0.0, None)
        if "finetune_epoch_fraction" in raw:
            values["finetune_epoch_fraction"] = _number(raw["finetune_epoch_fraction"],
                                                        f"{SECTION}.finetune_epoch_fraction", filename, 0.0, 1.0)
        if "max_conversations" in raw:
            values["max_conversations"] = int(_number(raw["max_conversations"], f"{SECTION}.max_conversations",
                                                      filename, 1, None))
        for name in ("new_intent_file", "test_stories", "models_dir", "notify_url", "state_url"):
            if name in raw:
                if name in ("new_intent_file", "notify_url", "state_url") and raw[name] == "":
                    continue
                if not isinstance(raw[name], str) or not raw[name].strip():
                    raise ConfigError(f"`{SECTION}.{name}` must be a path.", filename, fix="Give a relative path.")
                values[name] = raw[name]
        gate = raw.get("gate") or {}
        if not isinstance(gate, dict):
            raise ConfigError(f"`{SECTION}.gate` must be a mapping.", filename, fix="Write `gate: {max_f1_drop: 0.05}`.")
        gate_known = set(GateConfig.__dataclass_fields__)
        if set(gate) - gate_known:
            raise ConfigError(f"Unknown key(s) under `{SECTION}.gate:`: {', '.join(sorted(set(gate) - gate_known))}.",
                              filename, fix=f"Valid keys: {', '.join(sorted(gate_known))}.")
        g: dict[str, Any] = {}
        if "kb_queries" in gate:
            if not isinstance(gate["kb_queries"], str):
                raise ConfigError(f"`{SECTION}.gate.kb_queries` must be a path.", filename,
                                  fix="Write `kb_queries: tests/kb_queries.yml`.")
            g["kb_queries"] = gate["kb_queries"]
        for name in ("max_f1_drop", "max_accuracy_drop", "max_kb_recall_drop"):
            if name in gate:
                g[name] = _number(gate[name], f"{SECTION}.gate.{name}", filename, 0.0, 1.0)
        if "holdout" in gate:
            g["holdout"] = _number(gate["holdout"], f"{SECTION}.gate.holdout", filename, 0.05, 0.5)
        if "max_new_story_failures" in gate:
            g["max_new_story_failures"] = int(_number(gate["max_new_story_failures"],
                                                      f"{SECTION}.gate.max_new_story_failures", filename, 0, None))
        if "min_support" in gate:
            g["min_support"] = int(_number(gate["min_support"], f"{SECTION}.gate.min_support", filename, 1, None))
        values["gate"] = GateConfig(**g)
        return cls(**values)

    @classmethod
    def for_project(cls, root: Path) -> "WorkbenchConfig":
        """Read ``workbench:`` from ``root``/config.yml (the CLI's way; the server passes its settings)."""
        from bot.shared.yaml_io import read_yaml_file, to_plain

        path = Path(root) / "config.yml"
        raw = (to_plain(read_yaml_file(path)) or {}) if path.is_file() else {}
        return cls.from_section(raw.get(SECTION) if isinstance(raw, dict) else None, str(path))


def _number(value: Any, key: str, filename: str, low: float | None, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"`{key}` must be a number, got {value!r}.", filename, fix=f"Write `{key}: 0.5`-like values.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"`{key}` must be within [{low}, {high if high is not None else '∞'}], got {value}.",
                          filename, fix="Pick a value in range.")
    return float(value)
