"""TEDPolicy: a small torch model that generalises over dialogue histories.

Not Rasa's transformer-embedding-dialogue network, but the same contract: it reads
the last ``max_history`` featurised turns (intent, entities, slots, previous action,
active loop), learns from stories (never rules), and predicts a softmax over
``domain.action_names_or_texts``. Each turn becomes a multi-hot vector over a
vocabulary built at training time; a turn encoder (MLP) feeds a GRU whose last
state scores every action. Small enough to train in seconds on a 2-core CPU,
deterministic for a given ``random_seed``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from bot.dialogue.policies.policy import (
    DEFAULT_POLICY_PRIORITY,
    POLICY_MAX_HISTORY,
    POLICY_PRIORITY,
    Policy,
    PolicyPrediction,
    State,
    SupportedData,
    training_states_and_labels,
)
from bot.shared.constants import (
    ACTION_NAME,
    ACTION_TEXT,
    ACTIVE_LOOP,
    ENTITIES,
    INTENT,
    LOOP_NAME,
    PREVIOUS_ACTION,
    SHOULD_NOT_BE_SET,
    SLOTS,
    USER,
)
from bot.shared.exceptions import ConfigError, ModelNotFound

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ted_model.pt"

# Rasa TED options kefu accepts (so Rasa configs load) but does not use.
_RASA_TED_OPTIONS = frozenset(
    {
        "hidden_layers_sizes",
        "dense_dimension",
        "concat_dimension",
        "encoding_dimension",
        "transformer_size",
        "number_of_transformer_layers",
        "number_of_attention_heads",
        "unidirectional_encoder",
        "use_key_relative_attention",
        "use_value_relative_attention",
        "max_relative_position",
        "batch_strategy",
        "embedding_dimension",
        "number_of_negative_examples",
        "similarity_type",
        "loss_type",
        "ranking_length",
        "renormalize_confidences",
        "maximum_positive_similarity",
        "maximum_negative_similarity",
        "use_maximum_negative_similarity",
        "scale_loss",
        "regularization_constant",
        "negative_margin_scale",
        "drop_rate_dialogue",
        "drop_rate_label",
        "drop_rate_attention",
        "connection_density",
        "use_sparse_input_dropout",
        "use_dense_input_dropout",
        "evaluate_every_number_of_epochs",
        "evaluate_on_number_of_examples",
        "tensorboard_log_directory",
        "tensorboard_log_level",
        "checkpoint_model",
        "e2e_confidence_threshold",
        "featurizers",
        "entity_recognition",
        "BILOU_flag",
        "split_entities_by_comma",
        "max_training_samples",
        "entity_tag_granularity",
        "learning_rate_decay",
        "featurizer",
        "run_eagerly",
    }
)

_VALID_CONFIDENCES = ("softmax", "linear_norm")


class _TedNetwork(nn.Module):
    """Turn encoder (MLP) -> GRU over turns -> action scores."""

    def __init__(self, num_features: int, hidden_size: int, num_actions: int, dropout: float) -> None:
        super().__init__()
        self.turn_encoder = nn.Sequential(
            nn.Linear(num_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.output = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_actions))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        encoded = self.turn_encoder(features)
        packed = nn.utils.rnn.pack_padded_sequence(
            encoded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)
        return self.output(hidden[-1])


def state_features(state: State) -> dict[str, float]:
    """Sparse named features of one turn (what the vocabulary indexes)."""
    features: dict[str, float] = {}
    user = state.get(USER) or {}
    if user.get(INTENT):
        features[f"intent:{user[INTENT]}"] = 1.0
    for entity in user.get(ENTITIES) or ():
        features[f"entity:{entity}"] = 1.0
    prev = state.get(PREVIOUS_ACTION) or {}
    action = prev.get(ACTION_NAME) or prev.get(ACTION_TEXT)
    if action:
        features[f"prev:{action}"] = 1.0
    loop = (state.get(ACTIVE_LOOP) or {}).get(LOOP_NAME)
    if loop and loop != SHOULD_NOT_BE_SET:
        features[f"loop:{loop}"] = 1.0
    for slot_name, value in (state.get(SLOTS) or {}).items():
        if isinstance(value, str):  # should_not_be_set marker from rules
            continue
        for index, number in enumerate(value or ()):
            if number:
                features[f"slot:{slot_name}:{index}"] = float(number)
    return features


class TEDPolicy(Policy):
    """Machine-learned policy over the last ``max_history`` turns."""

    IGNORED_OPTIONS = _RASA_TED_OPTIONS

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_DATA

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        return {
            POLICY_PRIORITY: DEFAULT_POLICY_PRIORITY,
            POLICY_MAX_HISTORY: 8,
            "epochs": 50,
            # Rasa's TED default: grows linearly from 64 to 256 over the epochs (see
            # _batch_size_for_epoch); a fixed 32 took twice the CPU for the same training
            # accuracy on ecommerce-chatbot and ki-campus-kim (benchmarks/rasa_projects.py)
            "batch_size": [64, 256],
            "learning_rate": 0.005,
            "hidden_size": 64,
            "drop_rate": 0.1,
            "random_seed": 42,
            "constrain_similarities": False,
            "model_confidence": "softmax",
        }

    def __init__(
        self,
        config: Optional[dict[str, Any]] = None,
        filename: Optional[str] = None,
        line: Optional[int] = None,
    ) -> None:
        super().__init__(config, filename, line)
        if self.config["model_confidence"] not in _VALID_CONFIDENCES:
            raise ConfigError(
                f"TEDPolicy option 'model_confidence' is '{self.config['model_confidence']}'.",
                filename,
                line,
                fix=f"Use one of: {', '.join(_VALID_CONFIDENCES)}.",
            )
        epochs = self.config["epochs"]
        if not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(
                f"TEDPolicy option 'epochs' must be a non-negative integer, got {epochs!r}.",
                filename,
                line,
                fix="Set e.g. 'epochs: 50'.",
            )
        self.feature_vocabulary: dict[str, int] = {}
        self.action_names: list[str] = []
        self.model: Optional[_TedNetwork] = None
        self._base: Optional[TEDPolicy] = None
        self._epoch_fraction = 1.0

    def finetune_from(self, base: Policy, epoch_fraction: float) -> None:
        """Rasa's incremental training: start from ``base``'s weights (new state features
        get new input columns) and train ``epoch_fraction`` of the epochs, rounded up."""
        if isinstance(base, TEDPolicy) and base.model is not None:
            self._base = base
            self._epoch_fraction = float(epoch_fraction)

    # ---- featurisation
    def _encode(self, histories: list[list[State]]) -> tuple[torch.Tensor, torch.Tensor]:
        max_len = max(1, max((len(h) for h in histories), default=1))
        features = torch.zeros(len(histories), max_len, max(1, len(self.feature_vocabulary)))
        lengths = torch.ones(len(histories), dtype=torch.long)
        for row, history in enumerate(histories):
            lengths[row] = max(1, len(history))
            for position, state in enumerate(history):
                for name, value in state_features(state).items():
                    column = self.feature_vocabulary.get(name)
                    if column is not None:
                        features[row, position, column] = value
        return features, lengths

    def _build_network(self) -> _TedNetwork:
        return _TedNetwork(
            max(1, len(self.feature_vocabulary)),
            int(self.config["hidden_size"]),
            len(self.action_names),
            float(self.config["drop_rate"]),
        )

    def _batch_size_for_epoch(self, epoch: int, epochs: int | None = None) -> int:
        """A list ``[a, b]`` grows linearly from a to b over the ``epochs`` (default: the
        configured ones), as in Rasa."""
        batch_size = self.config["batch_size"]
        epochs = int(self.config["epochs"]) if epochs is None else epochs
        if isinstance(batch_size, (list, tuple)):
            if len(batch_size) == 1 or epochs <= 1:
                return int(batch_size[0])
            low, high = int(batch_size[0]), int(batch_size[-1])
            return int(low + epoch * (high - low) / (epochs - 1))
        return int(batch_size)

    # ---- training
    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> None:
        if "rule_only_data" in kwargs:
            self.set_shared_policy_states(rule_only_data=kwargs["rule_only_data"])
        trackers = SupportedData.trackers_for_supported_data(self.supported_data(), training_trackers)
        histories, labels = training_states_and_labels(trackers, domain, self.max_history)
        self.action_names = list(domain.action_names_or_texts)
        vocabulary: set[str] = set()
        for history in histories:
            for state in history:
                vocabulary.update(state_features(state))
        # the domain's names too, so the layout does not depend on which appear in stories
        vocabulary.update(f"intent:{name}" for name in getattr(domain, "intents", []) or [])
        vocabulary.update(f"prev:{name}" for name in self.action_names)
        if self._base is not None and self._base.action_names != self.action_names:
            raise ConfigError("Cannot fine-tune TEDPolicy: the domain's actions changed.",
                              fix="Train without --finetune, or restore the domain's actions.")
        from bot.nlu.featurizers import extend_vocabulary

        # fine-tuning: the old features keep their input columns, new ones follow
        self.feature_vocabulary = extend_vocabulary(self._base.feature_vocabulary if self._base else {}, vocabulary)

        seed = self.config["random_seed"]
        # a private RNG state: seeding must not change other components' randomness
        from bot.nlu.torch_runtime import torch_threads

        # One intra-op thread: the tensors are tiny and a second thread only spin-waits
        # (measured 9 s vs 84 s for the demo shop on a busy 2-core machine).
        with torch.random.fork_rng(devices=[]), torch_threads():
            if seed is not None:
                torch.manual_seed(int(seed))
            self._fit(histories, labels, seed)

    def _fit(self, histories: list[list[State]], labels: list[list[str]], seed: Optional[int]) -> None:
        from bot.nlu.torch_runtime import fused_adam

        self.model = self._build_network()
        epochs = int(self.config["epochs"])
        if self._base is not None and self._base.model is not None:
            state = self._base.model.state_dict()
            first = "turn_encoder.0.weight"
            grown = self.model.state_dict()[first].clone()
            grown[:, : state[first].shape[1]] = state[first]  # old features keep their columns
            state[first] = grown
            self.model.load_state_dict(state)
            epochs = max(1, math.ceil(epochs * self._epoch_fraction))
            logger.info("TEDPolicy fine-tunes the previous model for %d of %d epochs.", epochs, self.config["epochs"])
            self._base = None
        action_index = {name: i for i, name in enumerate(self.action_names)}
        examples = [
            (h, action_index[label[0]]) for h, label in zip(histories, labels) if label[0] in action_index
        ]
        if not examples:
            logger.warning("TEDPolicy: no story examples to learn from; it will predict nothing.")
            self.model.eval()
            return
        features, lengths = self._encode([h for h, _ in examples])
        targets = torch.tensor([y for _, y in examples], dtype=torch.long)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=float(self.config["learning_rate"]), **fused_adam())
        loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator()
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
        self.model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(examples), generator=generator)
            batch_size = max(1, self._batch_size_for_epoch(epoch, epochs))
            total = 0.0
            for start in range(0, len(examples), batch_size):
                index = order[start : start + batch_size]
                optimizer.zero_grad()
                logits = self.model(features[index], lengths[index])
                loss = loss_fn(logits, targets[index])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            logger.debug("TEDPolicy epoch %d: loss %.4f", epoch + 1, total / len(examples))
        self.model.eval()
        logger.info("TEDPolicy trained on %d examples for %d epochs.", len(examples), epochs)

    # ---- prediction
    def _confidences(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config["model_confidence"] == "linear_norm":
            clipped = torch.clamp(logits, min=0.0)
            total = float(clipped.sum())
            return clipped / total if total > 0 else torch.zeros_like(clipped)
        return torch.softmax(logits, dim=-1)

    def predict_action_probabilities(
        self,
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        result = self._default_predictions(domain)
        if self.model is None or not self.action_names:
            return self._prediction(result)
        states = self._prediction_states(tracker, domain, rule_only_data=rule_only_data)
        features, lengths = self._encode([states])
        with torch.no_grad():
            confidences = self._confidences(self.model(features, lengths)[0]).tolist()
        # map the model's action layout onto the current domain's
        for name, confidence in zip(self.action_names, confidences):
            if name in domain.action_names_or_texts:
                result[domain.index_for_action(name)] = float(confidence)
        ranking = sorted(zip(self.action_names, confidences), key=lambda x: -x[1])[:10]
        return self._prediction(result, diagnostic_data={"ranking": [[n, round(c, 6)] for n, c in ranking]})

    # ---- persistence
    def _metadata(self) -> dict[str, Any]:
        return {"feature_vocabulary": self.feature_vocabulary, "action_names": self.action_names}

    def _load_metadata(self, metadata: dict[str, Any]) -> None:
        self.feature_vocabulary = dict(metadata.get("feature_vocabulary") or {})
        self.action_names = list(metadata.get("action_names") or [])

    def persist(self, path: str | Path) -> None:
        super().persist(path)
        if self.model is not None:
            torch.save(self.model.state_dict(), Path(path) / WEIGHTS_FILE)

    def _load_extra(self, path: Path) -> None:
        weights = path / WEIGHTS_FILE
        if not self.action_names:
            return
        if not weights.is_file():
            raise ModelNotFound(f"{weights}: TEDPolicy weights are missing. Fix: train the model again.")
        self.model = self._build_network()
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval()
