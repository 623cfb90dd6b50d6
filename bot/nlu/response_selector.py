"""ResponseSelector (retrieval intents such as ``faq/ask_price``), kept light.

Rasa trains a second DIET; kefu fits a logistic regression on the sentence
features over the full ``intent/response`` keys, which is enough for FAQ-style
retrieval and trains in well under a second.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bot.nlu.base import Component, PipelineContext, softmax
from bot.nlu.classifiers import sentence_vector
from bot.shared.training_data.nlu import Message, TrainingData

RESPONSE_SELECTOR = "response_selector"


class ResponseSelector(Component):
    name = "ResponseSelector"
    defaults: dict[str, Any] = {
        **{k: None for k in (
            "hidden_layers_sizes", "share_hidden_layers", "transformer_size", "number_of_transformer_layers",
            "number_of_attention_heads", "use_key_relative_attention", "use_value_relative_attention",
            "max_relative_position", "unidirectional_encoder", "batch_size", "batch_strategy",
            "random_seed", "learning_rate", "embedding_dimension", "dense_dimension", "concat_dimension",
            "number_of_negative_examples", "similarity_type", "loss_type", "renormalize_confidences",
            "maximum_positive_similarity", "maximum_negative_similarity", "use_maximum_negative_similarity",
            "scale_loss", "regularization_constant", "negative_margin_scale", "connection_density",
            "drop_rate", "drop_rate_attention", "use_sparse_input_dropout", "use_dense_input_dropout",
            "evaluate_every_number_of_epochs", "evaluate_on_number_of_examples", "use_masked_language_model",
            "tensorboard_log_directory", "tensorboard_log_level", "featurizers", "checkpoint_model",
            "constrain_similarities", "model_confidence", "use_text_as_label", "run_eagerly",
        )},
        "epochs": 100,
        "retrieval_intent": None,
        "ranking_length": 10,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.keys: list[str] = []
        self.retrieval_intents: list[str] = []
        self.responses: dict[str, Any] = {}
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        wanted = self.config.get("retrieval_intent")
        usable = [m for m in messages if m.intent_response_key and (not wanted or m.intent == wanted)]
        self.retrieval_intents = sorted({m.intent for m in usable if m.intent})
        self.keys = sorted({m.intent_response_key for m in usable if m.intent_response_key})
        self.responses = {
            k: training_data.responses.get(f"utter_{k}", []) for k in self.keys
        }
        if len(self.keys) < 2:
            return
        from sklearn.linear_model import LogisticRegression

        x = sp.vstack([sentence_vector(m)[0] for m in usable], format="csr")
        # Fit on the feature columns these examples use: an unused column's weight has no data
        # gradient and L2 keeps it at its start, 0, so the model is the same, but L-BFGS works
        # on far fewer numbers (ki-campus-kim: the vocabulary of all 1 177 examples, 30 FAQ keys).
        used = np.unique(x.indices)
        clf = LogisticRegression(max_iter=200, class_weight="balanced", C=10.0)
        clf.fit(x[:, used], [m.intent_response_key for m in usable])
        self.keys = [str(c) for c in clf.classes_]
        self.coef = np.zeros((clf.coef_.shape[0], x.shape[1]), dtype=clf.coef_.dtype)
        self.coef[:, used] = clf.coef_
        self.intercept = clf.intercept_

    def process(self, message: Message) -> None:
        if not self.keys:
            return
        if self.coef is None or self.intercept is None:
            probs = np.ones(1)
        else:
            x, _ = sentence_vector(message)
            scores = np.asarray(x @ self.coef.T).reshape(-1) + self.intercept
            if len(self.keys) == 2:
                p = 1.0 / (1.0 + np.exp(-scores[0]))
                probs = np.array([1 - p, p])
            else:
                probs = softmax(scores)
        order = np.argsort(-probs)
        ranking = [{"confidence": float(probs[i]), "intent_response_key": self.keys[i]} for i in order]
        length = int(self.config["ranking_length"] or 0)
        if length > 0:
            ranking = ranking[:length]
        best = self.keys[int(order[0])]
        selector = dict(message.get(RESPONSE_SELECTOR) or {})
        selector["all_retrieval_intents"] = sorted(
            set(selector.get("all_retrieval_intents", [])) | set(self.retrieval_intents)
        )
        selector[self.config.get("retrieval_intent") or "default"] = {
            "response": {
                "responses": self.responses.get(best) or None,
                "confidence": float(probs[int(order[0])]),
                "intent_response_key": best,
                "utter_action": f"utter_{best}",
            },
            "ranking": ranking,
        }
        message.set(RESPONSE_SELECTOR, selector)

    def persist(self, path: Path) -> None:
        meta = {"keys": self.keys, "retrieval_intents": self.retrieval_intents, "responses": self.responses}
        (path / "selector.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if self.coef is not None and self.intercept is not None:
            np.savez(path / "weights.npz", coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "ResponseSelector":
        c = cls(config, context)
        meta = json.loads((path / "selector.json").read_text(encoding="utf-8"))
        c.keys, c.retrieval_intents, c.responses = meta["keys"], meta["retrieval_intents"], meta["responses"]
        if (path / "weights.npz").exists():
            with np.load(path / "weights.npz") as w:
                c.coef, c.intercept = w["coef"], w["intercept"]
        return c
