"""``python -m bot train``: one archive with NLU + policies, retraining only what changed."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.model.archive import (
    ARCHIVE_SUFFIX,
    METADATA_FILE,
    ModelMetadata,
    copy_part_from_archive,
    latest_archive,
    new_model_name,
    read_archive_metadata,
    read_metadata,
    write_archive,
)
from bot.model.child import InChild
from bot.model.finetune import unpack_finetune_base
from bot.shared.concurrency import usable_cores
from bot.shared.exceptions import ConfigError
from bot.shared.importer import DEFAULT_DATA_DIRS, ProjectImporter
from bot.shared.yaml_io import to_plain, write_yaml

logger = logging.getLogger(__name__)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


@dataclass
class TrainResult:
    model_path: Path | None
    trained_nlu: bool
    trained_core: bool
    reused_nlu: bool
    reused_core: bool
    seconds: float


def compute_fingerprint(
    importer: ProjectImporter, config: Any, nlu_importer: ProjectImporter | None = None,
) -> dict[str, str]:
    """Content hashes of each training input. ``nlu_importer`` reads the NLU data when it
    comes from other paths (``--nlu``); an importer without a domain (NLU-only training)
    fingerprints no core data."""
    from bot.version import __version__

    from bot.knowledge.build import kb_fingerprint

    kb = kb_fingerprint(importer.root, config)
    has_domain = importer.domain_path is not None
    return {
        "kb": _digest(kb),
        "kefu_version": __version__,
        "nlu_config": _digest({"language": config.language, "pipeline": to_plain(config.pipeline)}),
        "nlu_data": (nlu_importer or importer).nlu_digest(),
        "core_config": _digest({"policies": to_plain(config.policies)}),
        "core_data": importer.core_digest() if has_domain else "",
        "domain": importer.domain_digest() if has_domain else "",
    }


def _project_importers(
    root: str | Path,
    config: str | Path | None,
    domain: str | Path | None,
    data: list[str | Path] | None,
    nlu: list[str | Path] | None,
    stories: list[str | Path] | None,
    nlu_only: bool,
) -> tuple[ProjectImporter, ProjectImporter]:
    """(core importer, NLU importer): ``--nlu``/``--stories`` replace ``--data`` for their part.

    As in ``rasa train nlu``, NLU-only training needs no domain: without one the importer
    has ``domain_path=None`` and the archive gets a domain listing the data's intents and
    entities.
    """
    import dataclasses

    core_paths = list(stories) if stories else data
    try:
        importer = ProjectImporter.from_paths(root, config, domain, core_paths)
    except ConfigError as e:
        if not nlu_only or domain is not None or "No domain" not in str(e):
            raise
        base = Path(root)
        defaults = [base / d for d in DEFAULT_DATA_DIRS if (base / d).exists()]
        config_path = Path(config) if config else base / "config.yml"
        if not config_path.exists():
            raise
        importer = ProjectImporter(root=base, config_path=config_path, domain_path=None,
                                   data_paths=[Path(d) for d in (core_paths or defaults)])
    nlu_importer = importer
    if nlu:
        nlu_importer = dataclasses.replace(importer, data_paths=[Path(p) for p in nlu])
    for path in list(nlu or []) + list(stories or []) + list(data or []):
        if not Path(path).exists():
            raise ConfigError(f"Training data not found: {path}.", path,
                              fix="Pass an existing file or folder to --data/--nlu/--stories.")
    return importer, nlu_importer


def _domain_from_nlu(data: Any) -> Any:
    """The domain of an NLU-only archive trained without a domain file: the data's intents
    and entities, so the server's /model/parse and the shell know them."""
    from bot.shared.domain import Domain

    return Domain.from_dict({
        "version": "3.1",
        "intents": sorted(data.intents),
        "entities": sorted(data.entities),
    })


def _nlu_unchanged(old: dict[str, str], new: dict[str, str]) -> bool:
    keys = ("kefu_version", "nlu_config", "nlu_data")
    return all(old.get(k) == new.get(k) for k in keys)


def _core_unchanged(old: dict[str, str], new: dict[str, str]) -> bool:
    keys = ("kefu_version", "core_config", "core_data", "domain")
    return all(old.get(k) == new.get(k) for k in keys)


def check_rasa_classes(config: Any, root: Path) -> None:
    """Stop before training when config.yml names a class written against Rasa's API."""
    from bot.dialogue.policies import POLICIES
    from bot.model.rasa_api import check_custom_classes, check_unavailable_components
    from bot.nlu.registry import ALIASES, COMPONENTS

    pipeline = list(zip(config.pipeline, list(config.pipeline_lines) + [None] * len(config.pipeline)))
    policies = list(zip(config.policies, list(config.policy_lines) + [None] * len(config.policies)))
    check_unavailable_components(pipeline, getattr(config, "filename", None))
    entries = [("pipeline component", c, line) for c, line in pipeline]
    entries += [("policy", p, line) for p, line in policies]
    builtins = set(POLICIES) | set(COMPONENTS) | set(ALIASES)
    check_custom_classes(entries, root, builtins, getattr(config, "filename", None))


def train_nlu_part(importer: ProjectImporter, config: Any, out_dir: Path, base: Path | None = None,
                   epoch_fraction: float = 1.0) -> bool:
    """Train the NLU pipeline into ``out_dir/nlu``; False for an NLU-less config.
    ``base``: a previous model's ``nlu`` folder to fine-tune from (``train --finetune``)."""
    from bot.nlu import NLUPipeline

    pipeline = NLUPipeline.from_config(config, importer.root)
    if pipeline.is_empty:
        logger.info("No NLU pipeline in %s: only /intent messages will be understood.", config.filename)
        return False
    data = importer.get_nlu_data()
    if not data.training_examples:
        logger.warning("No NLU training examples found; skipping NLU training.")
        return False
    pipeline.train(data, NLUPipeline.load(base) if base is not None else None, epoch_fraction)
    pipeline.persist(out_dir / "nlu")
    return True


def train_core_part(
    importer: ProjectImporter, config: Any, domain: Any, out_dir: Path, augmentation: int = 50,
    steps: list[Any] | None = None, base: Path | None = None, epoch_fraction: float = 1.0,
) -> bool:
    """Train the policies into ``out_dir/core`` (``steps``: the story/rule steps, when read already;
    ``base``: a previous model's ``core`` folder to fine-tune from)."""
    from bot.dialogue.generator import generate_training_trackers
    from bot.dialogue.policies.ensemble import PolicyEnsemble
    from bot.shared.training_data.story_graph import StoryGraph

    started = time.perf_counter()
    if steps is None:
        steps = importer.get_story_steps(domain)
    ensemble = PolicyEnsemble.from_config(config.policies, getattr(config, "filename", None))
    graph = StoryGraph(steps)
    trackers = generate_training_trackers(graph, domain, augmentation_factor=augmentation)
    logger.info("Training policies on %d trackers from %d story/rule steps.", len(trackers), len(steps))
    ensemble.train(trackers, domain, base=PolicyEnsemble.load(base) if base is not None else None,
                   epoch_fraction=epoch_fraction)
    ensemble.persist(out_dir / "core")
    logger.info("Trained the policies in %.1fs.", time.perf_counter() - started)
    return True


#: policies whose training can be long enough to run beside the NLU pipeline's (torch models)
ML_POLICIES = frozenset({"TEDPolicy"})
#: epochs x story steps from which the policies train in their own process (see core_beside_nlu)
CORE_BESIDE_NLU_MIN_WORK = 2000


def core_beside_nlu(config: Any, steps: list[Any]) -> bool:
    """Whether the policies are worth their own process while the NLU pipeline trains: a
    second core and a torch policy whose epochs times the story steps (not rules) reach
    ``CORE_BESIDE_NLU_MIN_WORK`` (ecommerce-chatbot 200 x 21, ki-campus-kim 100 x 38; TED
    took 25-35 s of their training on the shared 2-core box). A spawned process costs
    ~3 CPU-s to start, more than the `rasa init` project's TED (100 x 5) takes."""
    epochs = [
        int(p.get("epochs") or 0) for p in config.policies or []
        if isinstance(p, dict) and str(p.get("name")) in ML_POLICIES and isinstance(p.get("epochs"), int)
    ]
    stories = sum(1 for step in steps if not getattr(step, "is_rule", False))
    return usable_cores() >= 2 and max(epochs, default=0) * stories >= CORE_BESIDE_NLU_MIN_WORK


def train(
    root: str | Path = ".",
    config: str | Path | None = None,
    domain: str | Path | None = None,
    data: list[str | Path] | None = None,
    out: str | Path = "models",
    fixed_model_name: str | None = None,
    force: bool = False,
    nlu_only: bool = False,
    core_only: bool = False,
    augmentation: int = 50,
    nlu: list[str | Path] | None = None,
    stories: list[str | Path] | None = None,
    parallel: bool = False,
    finetune: str | Path | bool | None = None,
    epoch_fraction: float = 1.0,
) -> TrainResult:
    """Train a model archive; reuse unchanged parts of the newest archive in ``out``.

    ``nlu``/``stories`` (Rasa's ``--nlu``/``--stories``) name the NLU data and the
    stories/rules instead of ``data``; ``nlu_only`` needs no domain (Rasa's ``train nlu``).
    ``parallel`` trains the policies in a second process while the NLU pipeline trains,
    where both must train and :func:`core_beside_nlu` says it pays (``python -m bot train``).
    ``finetune`` (Rasa's ``--finetune [PATH]``: True for the newest archive in ``out``)
    continues from that model instead: its weights, ``epoch_fraction`` of the epochs
    (:func:`bot.model.finetune.check_finetunable` says what may change).
    """
    finetuning = finetune is not None and finetune is not False
    if finetuning:
        force = True  # Rasa's fine-tuning always trains
    started = time.perf_counter()
    importer, nlu_importer = _project_importers(root, config, domain, data, nlu, stories, nlu_only)
    project_config = importer.get_config()
    check_rasa_classes(project_config, importer.root)
    project_domain = (
        importer.get_domain() if importer.domain_path is not None
        else _domain_from_nlu(nlu_importer.get_nlu_data())
    )
    fingerprint = compute_fingerprint(importer, project_config, nlu_importer)
    # the domain as trained: sub-project domains and the NLU's retrieval intents included
    fingerprint["domain"] = _digest([fingerprint["domain"], project_domain.fingerprint()])

    out_path = Path(out)
    previous = latest_archive(out_path) if not force else None
    old_meta = read_archive_metadata(previous) if previous else None
    old_fp = old_meta.fingerprint if old_meta else {}

    if (
        old_meta
        and _nlu_unchanged(old_fp, fingerprint)
        and _core_unchanged(old_fp, fingerprint)
        and old_fp.get("kb") == fingerprint.get("kb")
        and not (nlu_only or core_only)
    ):
        logger.info("Nothing changed since %s; no new model trained.", previous)
        return TrainResult(previous, False, False, True, True, time.perf_counter() - started)

    base_dir = (unpack_finetune_base(finetune, out_path, project_config, project_domain, epoch_fraction)
                if finetuning else None)
    nlu_base = core_base = None
    if base_dir is not None:
        nlu_base = base_dir / "nlu" if (base_dir / "nlu").is_dir() else None
        core_base = base_dir / "core" if (base_dir / "core").is_dir() else None
        for part, found, trains in (("NLU pipeline", nlu_base, not core_only), ("policies", core_base, not nlu_only)):
            if found is None and trains:
                logger.warning("The model to fine-tune has no trained %s: they train from scratch.", part)
    work = Path(tempfile.mkdtemp(prefix="kefu-train-"))
    try:
        trained_nlu = trained_core = reused_nlu = reused_core = False
        has_nlu = has_core = False
        if not core_only and old_meta and old_meta.has_nlu and _nlu_unchanged(old_fp, fingerprint) and previous:
            reused_nlu = has_nlu = copy_part_from_archive(previous, "nlu", work)
        if not nlu_only and old_meta and old_meta.has_core and _core_unchanged(old_fp, fingerprint) and previous:
            reused_core = has_core = copy_part_from_archive(previous, "core", work)
        core_child = steps = None
        if parallel and not core_only and not nlu_only and not has_nlu and not has_core:
            steps = importer.get_story_steps(project_domain)
            if core_beside_nlu(project_config, steps):
                logger.info("Training the policies in a second process while the NLU pipeline trains.")
                core_child = InChild(train_core_part, importer, project_config, project_domain, work, augmentation,
                                     steps, core_base, epoch_fraction, name="kefu-train-core")
        try:
            if not core_only and not has_nlu:
                has_nlu = trained_nlu = train_nlu_part(nlu_importer, project_config, work, nlu_base, epoch_fraction)
            if core_child is not None:
                has_core = trained_core = bool(core_child.result())
            elif not nlu_only and not has_core:
                has_core = trained_core = train_core_part(
                    importer, project_config, project_domain, work, augmentation, steps, core_base, epoch_fraction)
        finally:
            if core_child is not None:
                core_child.stop()

        from bot.knowledge.build import build_kb_into

        kb_meta = build_kb_into(work / "knowledge", importer.root, project_config)
        write_yaml(to_plain(project_config.as_dict()), work / "config.yml")
        project_domain.persist(work / "domain.yml")
        name = fixed_model_name or new_model_name()
        if name.endswith(ARCHIVE_SUFFIX):
            name = name[: -len(ARCHIVE_SUFFIX)]
        meta = ModelMetadata(
            model_id=name,
            trained_at=time.time(),
            assistant_id=project_config.assistant_id,
            language=project_config.language,
            fingerprint=fingerprint,
            has_nlu=has_nlu,
            has_core=has_core,
            extra={
                **({"knowledge": kb_meta} if kb_meta else {}),
                **({"finetuned_from": read_metadata(base_dir).model_id, "epoch_fraction": epoch_fraction}
                   if base_dir is not None else {}),
            },
        )
        (work / METADATA_FILE).write_text(json.dumps(meta.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        target = out_path if out_path.suffix == ".gz" else out_path / f"{name}{ARCHIVE_SUFFIX}"
        write_archive(work, target)
        logger.info("Model written to %s", target)
        return TrainResult(target, trained_nlu, trained_core, reused_nlu, reused_core, time.perf_counter() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if base_dir is not None:
            shutil.rmtree(base_dir, ignore_errors=True)
