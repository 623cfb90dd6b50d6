"""Shared fixture: the tiny bilingual shop (tests/data/nlu/tinyshop) trained once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

TINYSHOP = Path(__file__).resolve().parents[1] / "data" / "nlu" / "tinyshop"


@pytest.fixture(scope="session")
def tinyshop_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.model.training import train

    result = train(root=TINYSHOP, out=tmp_path_factory.mktemp("tinyshop-models"))
    assert result.model_path is not None
    return result.model_path
