from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / "data" / "knowledge"


@pytest.fixture(scope="session")
def encoder():
    from bot.embeddings import get_encoder

    return get_encoder()


@pytest.fixture()
def kb_dir(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge_base"
    shutil.copytree(DATA / "small", target)
    return target


@pytest.fixture()
def small_kb(kb_dir, encoder):
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig
    from bot.knowledge.loader import load_entries

    return KnowledgeBase.build(load_entries(kb_dir).entries, KnowledgeConfig(), encoder)
