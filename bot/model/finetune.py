"""``train --finetune [MODEL]`` (Rasa's incremental training): which model to continue from,
and what may have changed since it was trained. The components continue from their old
counterparts themselves (``Component.finetune_from``, ``Policy.finetune_from``)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from bot.model.archive import latest_archive, unpack_archive
from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import read_yaml_file, to_plain

logger = logging.getLogger(__name__)


def finetune_base(finetune: str | Path | bool, out: Path) -> Path:
    """The archive ``train --finetune [PATH]`` continues from: PATH (an archive, or the newest
    in a folder), or without PATH the newest archive in the output folder, as in Rasa."""
    where = out if finetune is True or not str(finetune) else Path(finetune)
    archive = latest_archive(where)
    if archive is None or not archive.is_file():
        raise ConfigError(
            f"No model to fine-tune found in {where}.", str(where),
            fix="Pass --finetune PATH (a model archive or a folder of them), or train one without --finetune first.")
    return archive


def _without_epochs(entries: Any) -> list[Any]:
    return [{k: v for k, v in e.items() if k != "epochs"} if isinstance(e, dict) else e for e in entries or []]


def check_finetunable(base_dir: Path, config: Any, domain: Any) -> None:
    """Rasa's rules for fine-tuning (its ``FinetuningValidator``): the configuration may only
    change its ``epochs`` and the domain only its responses. That the NLU data keeps the
    model's intents and entities is checked by the component that learned them
    (``DIETClassifier._continue_from_base``)."""
    fix = "Train without --finetune, or undo the change."
    old_config = to_plain(read_yaml_file(base_dir / "config.yml")) or {}
    new_config = to_plain(config.as_dict())
    for key in ("language", "pipeline", "policies"):
        old, new = old_config.get(key), new_config.get(key)
        if key != "language":
            old, new = _without_epochs(old), _without_epochs(new)
        if old != new:
            where = ""
            if key != "language":
                changed = [i for i in range(max(len(old), len(new)))
                           if i >= len(old) or i >= len(new) or old[i] != new[i]]
                entry = (new if changed[0] < len(new) else old)[changed[0]]
                name = entry.get("name") if isinstance(entry, dict) else entry
                where = f" (entry {changed[0] + 1}, {name})"
            raise ConfigError(
                f"Cannot fine-tune: config.yml's '{key}' changed{where}; only 'epochs' may change.",
                getattr(config, "filename", None), fix=fix)
    old_domain = to_plain(read_yaml_file(base_dir / "domain.yml")) or {}
    new_domain = to_plain(domain.as_dict())
    for key in sorted(set(old_domain) | set(new_domain)):
        if key in ("responses", "version", "session_config") or old_domain.get(key) == new_domain.get(key):
            continue
        raise ConfigError(f"Cannot fine-tune: the domain's '{key}' changed; only responses may change.",
                          None, fix=fix)


def unpack_finetune_base(finetune: str | Path | bool, out: Path, config: Any, domain: Any,
                         epoch_fraction: float) -> Path:
    """The model ``train --finetune`` continues from (:func:`finetune_base`), unpacked into a
    new temp folder (its config, domain, metadata and ``nlu``/``core`` parts, not its
    knowledge index) and checked (:func:`check_finetunable`). The caller removes the folder;
    a refused model's is removed here."""
    if not epoch_fraction > 0:
        raise ConfigError(f"--epoch-fraction must be above 0, got {epoch_fraction}.",
                          fix="e.g. --epoch-fraction 0.2 trains a fifth of the configured epochs.")
    archive = finetune_base(finetune, out)
    base_dir = unpack_archive(archive, only=("config.yml", "domain.yml", "nlu", "core"))
    try:
        check_finetunable(base_dir, config, domain)
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise
    logger.info("Fine-tuning %s with %s of the configured epochs.", archive, epoch_fraction)
    return base_dir
