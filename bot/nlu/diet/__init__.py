"""Rasa 3.6's DIETClassifier in torch: ``classifier`` (the pipeline component), ``model``
(the graph), ``losses`` (its loss), ``batches`` (training data and batches), ``tagging`` (BILOU, CRF).
How torch runs (threads, precision) is ``bot.nlu.torch_runtime``."""
from bot.nlu.diet.classifier import DIETClassifier
from bot.nlu.diet.model import DIETModel

__all__ = ["DIETClassifier", "DIETModel"]
