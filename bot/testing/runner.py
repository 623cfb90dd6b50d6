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


def custom_action_names(domain: Any) -> list[str]:
    """The domain's custom actions: ``actions:`` entries that are neither responses nor Rasa's defaults."""
    from bot.shared.constants import DEFAULT_ACTION_NAMES

    responses = set(getattr(domain, "responses", {}) or {})
    names = getattr(domain, "_custom_actions", None) or []
    return [a for a in names if a not in responses and a not in DEFAULT_ACTION_NAMES]


def check_action_server(endpoints_file: str | Path, domain: Any, timeout: float = 5.0) -> list[str]:
    """Read ``--endpoints`` as Rasa does and ask its action server which actions it serves.

    Rasa's ``test core`` replays stories without running actions, and so does kefu; the file
    is still read (an error in it stops the run, as in Rasa). kefu adds one check: with an
    ``action_endpoint``, ``GET /actions`` of the action server must list the domain's custom
    actions. Returns warnings (server unreachable, actions it does not serve).
    """
    import json
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    from bot.shared.endpoints import load_endpoints

    if not Path(endpoints_file).is_file():
        raise ConfigError(f"--endpoints {endpoints_file}: no such file.", fix="Pass an existing endpoints.yml.")
    endpoints = load_endpoints(endpoints_file)
    action = endpoints.action_endpoint
    url = getattr(action, "url", None) if action is not None else None
    if not url:
        return []
    custom = custom_action_names(domain)
    parts = urlsplit(str(url))
    actions_url = urlunsplit((parts.scheme, parts.netloc, "/actions", "", ""))
    try:
        with urllib.request.urlopen(actions_url, timeout=timeout) as response:  # noqa: S310 - the project's own URL
            served = {str(a.get("name")) for a in json.loads(response.read().decode("utf-8") or "[]")
                      if isinstance(a, dict)}
    except (urllib.error.URLError, OSError, ValueError) as e:
        if not custom:
            return []
        return [f"The action server of {endpoints_file} ({url}) did not answer GET /actions ({e}); "
                f"the stories were still replayed (actions don't run in `test core`). Start it with "
                f"`python -m bot run actions` before serving the bot."]
    missing = [a for a in custom if a not in served]
    if missing:
        return [f"The action server at {url} does not serve these custom actions of the domain: "
                f"{', '.join(missing)}. Register them in the actions package it runs."]
    logger.info("Action server at %s serves all %d custom actions.", url, len(custom))
    return []


async def evaluate_core(
    model_path: str | Path,
    stories: list[str | Path],
    out_dir: str | Path,
    endpoints: str | Path | None = None,
    max_stories: int | None = None,
    successes: bool = False,
    errors: bool = True,
) -> Any:
    from bot.testing.core import evaluate_stories

    model = LoadedModel.load(resolve_model_path(model_path))
    try:
        if model.ensemble is None:
            raise ConfigError("The model has no dialogue policies; train it without --nlu-only (or `train core`).")
        if endpoints is not None:
            from bot.shared.concurrency import run_blocking

            for warning in await run_blocking(check_action_server, endpoints, model.domain):
                logger.warning(warning)
        return await evaluate_stories(stories, ModelUnderTest(model), out_dir, max_stories=max_stories,
                                      successes=successes, errors=errors)
    finally:
        model.close()


def _model_arg(args: argparse.Namespace) -> str:
    if args.model == "models" and args.root != ".":
        return str(Path(args.root) / "models")
    return args.model


def run_core_tests(args: argparse.Namespace) -> int:
    paths = test_story_paths(args.root, args.stories)
    if not paths:
        raise ConfigError(f"No test stories in {Path(args.root) / 'tests'}.", fix="Pass --stories FILE_OR_FOLDER.")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"Test stories not found: {', '.join(map(str, missing))}.",
                          fix="Pass --stories FILE_OR_FOLDER.")
    endpoints = getattr(args, "endpoints", None)
    result = asyncio.run(evaluate_core(
        _model_arg(args), paths, args.out, endpoints=endpoints, max_stories=getattr(args, "max_stories", None),
        successes=getattr(args, "successes", False), errors=not getattr(args, "no_errors", False),
    ))
    conv = result.conversation_accuracy
    print(
        f"Stories: {conv.get('correct')}/{conv.get('total')} correct "
        f"(conversation accuracy {conv.get('accuracy', 0):.3f}); action accuracy {result.accuracy:.3f}."
    )
    print(f"Reports written to {args.out}/story_report.json and {args.out}/failed_test_stories.yml")
    if result.failed_stories:
        print("Failed stories: " + ", ".join(result.failed_stories))
        if args.fail_on_prediction_errors:
            print("Exit 1: --fail-on-prediction-errors and a story has a wrongly predicted action.")
            return 1
    return 0


def run_nlu_tests(args: argparse.Namespace) -> int:
    from bot.testing.nlu import run_nlu_tests as run

    return run(args)


def run_all_tests(args: argparse.Namespace) -> int:
    """``rasa test``: the test stories (if any), then NLU on the test data (or the training data)."""
    code = 0
    if args.stories or test_story_paths(args.root, None):
        print("== test core ==")
        code = run_core_tests(args)
    else:
        print(f"== test core: skipped, no test stories in {Path(args.root) / 'tests'} ==")
    print("== test nlu ==")
    return max(code, run_nlu_tests(args))
