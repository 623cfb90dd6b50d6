"""The core part is retrained when the domain as trained changes, also through the NLU data
(a new retrieval intent adds ``utter_<intent>`` to the domain, as Rasa's importer does)."""
from __future__ import annotations

from pathlib import Path

from bot.model.training import train
from tests.shared.test_rasa_leniency import RETRIEVAL, _write


def test_new_retrieval_intent_in_nlu_retrains_core(tmp_path: Path) -> None:
    _write(tmp_path, RETRIEVAL)
    first = train(root=tmp_path, out=tmp_path / "models")
    assert first.trained_core
    again = train(root=tmp_path, out=tmp_path / "models")
    assert again.reused_core and not again.trained_core
    nlu = tmp_path / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text() + "- intent: chitchat/weather\n  examples: |\n    - sunny?\n    - rain?\n")
    third = train(root=tmp_path, out=tmp_path / "models")
    assert third.trained_core and not third.reused_core
