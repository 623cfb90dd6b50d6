"""CLI glue for ``python -m bot test core`` and ``python -m bot test nlu``."""
from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.model.archive import resolve_model_path
from bot.model.loader import LoadedModel
from bot.shared.exceptions import ConfigError
from bot.shared.importer import ProjectImporter

logger = logging.getLogger(__name__)


@dataclass
class ModelUnderTest:
    """What ``evaluate_stories`` needs: domain, policies and (optionally) NLU."""

    model: LoadedModel

    @property
    def domain(self) -> Any:
        return self.model.domain

    @property
    def policy_ensemble(self) -> Any:
        return self.model.ensemble

    def nlu_parse(self, text: str) -> dict:
        if self.model.nlu is None:
            return {"text": text, "intent": {"name": None, "confidence": 0.0}, "entities": []}
        return self.model.nlu.parse(text)


def test_story_paths(root: str | Path, stories: list[str] | None) -> list[Path]:
    if stories:
        return [Path(s) for s in stories]
    # Rasa's convention: test stories are the YAML files in tests/ (not its sub-folders,
    # which in a kefu checkout hold pytest fixture projects).
    root = Path(root)
    return sorted(p for p in (root / "tests").glob("*.y*ml") if p.is_file())


async def evaluate_core(model_path: str | Path, stories: list[str | Path], out_dir: str | Path) -> Any:
    from bot.testing.core import evaluate_stories

    model = LoadedModel.load(resolve_model_path(model_path))
    try:
        if model.ensemble is None:
            raise ConfigError("The model has no dialogue policies; train it without --nlu-only.")
        return await evaluate_stories(stories, ModelUnderTest(model), out_dir)
    finally:
        model.close()


def run_core_tests(args: argparse.Namespace) -> int:
    paths = test_story_paths(args.root, args.stories)
    if not paths:
        raise ConfigError(f"No test stories in {Path(args.root) / 'tests'}.", fix="Pass --stories FILE_OR_FOLDER.")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"Test stories not found: {', '.join(map(str, missing))}.",
                          fix="Pass --stories FILE_OR_FOLDER.")
    model_arg = args.model
    if model_arg == "models" and args.root != ".":
        model_arg = str(Path(args.root) / "models")
    result = asyncio.run(evaluate_core(model_arg, paths, args.out))
    conv = result.conversation_accuracy
    print(
        f"Stories: {conv.get('correct')}/{conv.get('total')} correct "
        f"(conversation accuracy {conv.get('accuracy', 0):.3f}); action accuracy {result.accuracy:.3f}."
    )
    print(f"Reports written to {args.out}/story_report.json and {args.out}/failed_test_stories.yml")
    if result.failed_stories:
        print("Failed stories: " + ", ".join(result.failed_stories))
        if args.fail_on_prediction_errors:
            return 1
    return 0


def run_nlu_tests(args: argparse.Namespace) -> int:
    try:
        from bot.nlu.evaluation import run_nlu_evaluation
    except ImportError as e:  # pragma: no cover - arrives with the NLU issue
        raise ConfigError("NLU evaluation is not available in this build.") from e
    return run_nlu_evaluation(args)
