"""Root conftest: offline model hubs, repository paths."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
RASA_EXAMPLES = REPO_ROOT.parent / "shared" / "benchmarks" / "rasa_examples"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def rasa_examples() -> Path:
    if not RASA_EXAMPLES.is_dir():
        pytest.fail(f"Rasa example projects not found at {RASA_EXAMPLES} (../shared/ is required)")
    return RASA_EXAMPLES
