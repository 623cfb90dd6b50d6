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


#: three English shop intents, four examples each (sentence-encoder tests)
ENGLISH_NLU = (
    "nlu:\n"
    "- intent: track_order\n  examples: |\n    - where is my order\n    - track my parcel\n"
    "    - has my package shipped\n    - when will my delivery arrive\n"
    "- intent: refund\n  examples: |\n    - I want my money back\n    - refund please\n"
    "    - how do I get reimbursed\n    - return the shoes for a refund\n"
    "- intent: greet\n  examples: |\n    - hello\n    - hi there\n    - good morning\n    - hey\n"
)


def check_dense_pipeline(config: dict, nlu_yaml: str, probe: str, dense_dims: list[int],
                         unseen: dict[str, str], out: Path) -> None:
    """Train ``config`` (tokenizer, CountVectors, dense featurizers, then the classifier) and check it.

    The dense blocks have the expected widths, unseen paraphrases get their intents, and
    the persisted and reloaded pipeline parses them identically.
    """
    from bot.nlu.base import FEATURES
    from bot.nlu.pipeline import NLUPipeline
    from bot.shared.training_data.nlu import Message, load_nlu_yaml

    pipeline = NLUPipeline.from_config(config).train(load_nlu_yaml(nlu_yaml))
    message = Message(probe)
    for c in pipeline.components[: 2 + len(dense_dims)]:
        c.process(message)
    assert [f.sentence.shape[1] for f in message.get(FEATURES) if f.kind == "dense"] == dense_dims
    for text, intent in unseen.items():
        assert pipeline.parse(text)["intent"]["name"] == intent, text
    loaded = NLUPipeline.load(pipeline.persist(out))
    for text in unseen:
        a, b = pipeline.parse(text)["intent"], loaded.parse(text)["intent"]
        assert a["name"] == b["name"] and a["confidence"] == pytest.approx(b["confidence"], abs=1e-6)
