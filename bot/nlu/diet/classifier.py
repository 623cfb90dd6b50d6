"""DIETClassifier: joint intent classification and entity tagging in torch.

Rasa 3.6's DIET, layer for layer (rasa/nlu/classifiers/diet_classifier.py,
rasa/utils/tensorflow/rasa_layers.py, transformer.py, layers.py): sparse features
go through a sparse-to-dense layer, are concatenated with dense features, and the
message's sentence features become one more position right after its last token
(the ``__CLS__``); a pre-norm transformer with randomly connected dense layers runs
over them; the CLS output is embedded and compared to the intent embeddings with
Rasa's dot-product loss and sampled negatives; token outputs feed CRF taggers for
entities (BILOU), roles and groups.

What kefu adds is speed, not a different model: the encoder's dense layers run on
the real positions only (packed, no padding), batches are length-bucketed, the last
layer computes the CLS alone when no entities are tagged, and training uses
bfloat16 matmuls where the CPU has them.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.nlu.base import (
    ENTITIES, FEATURES, INTENT, INTENT_RANKING, Component, PipelineContext, ranking_from_scores, tokens_of,
)
from bot.nlu.diet.batches import (
    BATCH_STRATEGIES, balanced_order, grow_sparse_weight, has_signal, length_bucketed_batches, make_batch,
    message_arrays, sparse_blocks,
)
from bot.nlu.diet.losses import LOSS_TYPES, LossOptions, dot_product_loss
from bot.nlu.diet.model import SPARSE_WEIGHT_LAYOUT, DIETModel, hidden_layer_sizes
from bot.nlu.diet.tagging import NO_ENTITY, bilou_tags, tag_spans, token_tags
from bot.nlu.torch_runtime import (
    TRAINING_PRECISIONS, EpochThreads, fused_adam, inference_threads, training_precision, training_threads,
)
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)


class DIETClassifier(Component):
    name = "DIETClassifier"
    defaults: dict[str, Any] = {
        "hidden_layers_sizes": {"text": [], "label": []},
        "share_hidden_layers": False,
        "transformer_size": 256,
        "number_of_transformer_layers": 2,
        "number_of_attention_heads": 4,
        "use_key_relative_attention": False,
        "use_value_relative_attention": False,
        "max_relative_position": None,
        "unidirectional_encoder": False,
        "batch_size": [64, 256],
        "batch_strategy": "balanced",
        "epochs": 300,
        "random_seed": None,
        "learning_rate": 0.001,
        "embedding_dimension": 20,
        "dense_dimension": {"text": 128, "label": 20},
        "concat_dimension": {"text": 128, "label": 20},
        "number_of_negative_examples": 20,
        "similarity_type": "auto",
        "loss_type": "cross_entropy",
        "ranking_length": 10,
        "renormalize_confidences": False,
        "maximum_positive_similarity": 0.8,
        "maximum_negative_similarity": -0.4,
        "use_maximum_negative_similarity": True,
        "scale_loss": False,
        "regularization_constant": 0.002,
        "negative_margin_scale": 0.8,
        "connection_density": 0.2,
        "drop_rate": 0.2,
        "drop_rate_attention": 0.0,
        "use_sparse_input_dropout": True,
        "use_dense_input_dropout": True,
        "evaluate_every_number_of_epochs": 20,
        "evaluate_on_number_of_examples": 0,
        "intent_classification": True,
        "entity_recognition": True,
        "use_masked_language_model": False,
        "BILOU_flag": True,
        "tensorboard_log_directory": None,
        "tensorboard_log_level": "epoch",
        "featurizers": [],
        "checkpoint_model": False,
        "split_entities_by_comma": True,
        "constrain_similarities": False,
        "model_confidence": "softmax",
        "run_eagerly": False,
        # kefu: matmuls in bfloat16 while training (weights, optimizer and loss stay float32)
        # where the CPU computes bfloat16 natively; "float32" turns it off
        "training_precision": "auto",
    }
    ignored_options = frozenset({
        "share_hidden_layers", "use_key_relative_attention",
        "use_value_relative_attention", "max_relative_position",
        "use_masked_language_model", "tensorboard_log_directory",
        "tensorboard_log_level", "run_eagerly",
    })
    selects_featurizers = True

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        cfg = self.config
        if cfg["model_confidence"] not in ("softmax", "linear_norm", "cosine", "inner"):
            raise ConfigError(
                f"DIETClassifier model_confidence '{cfg['model_confidence']}' is not supported.",
                context.config_file, fix="Use model_confidence: softmax.",
            )
        if cfg["batch_strategy"] not in BATCH_STRATEGIES:
            raise ConfigError(
                f"DIETClassifier batch_strategy '{cfg['batch_strategy']}' is unknown.",
                context.config_file, fix="Use batch_strategy: balanced (Rasa's default) or sequence.",
            )
        if cfg["training_precision"] not in TRAINING_PRECISIONS:
            raise ConfigError(
                f"DIETClassifier training_precision '{cfg['training_precision']}' is unknown.",
                context.config_file, fix=f"Use one of {', '.join(TRAINING_PRECISIONS)}.",
            )
        try:
            hidden_layer_sizes(cfg["hidden_layers_sizes"])
        except ValueError as e:
            raise ConfigError(f"DIETClassifier {e}.", context.config_file,
                              fix="e.g. hidden_layers_sizes: {text: [256, 128], label: []}") from None
        if cfg["loss_type"] not in LOSS_TYPES:
            raise ConfigError(
                f"DIETClassifier loss_type '{cfg['loss_type']}' is unknown.",
                context.config_file, fix=f"Use one of {', '.join(LOSS_TYPES)} (Rasa's).",
            )
        if cfg["similarity_type"] == "auto":  # Rasa's update_similarity_type
            cfg["similarity_type"] = "cosine" if cfg["loss_type"] == "margin" else "inner"
        layers = int(cfg["number_of_transformer_layers"])
        if layers > 0 and int(cfg["transformer_size"]) % int(cfg["number_of_attention_heads"]):
            raise ConfigError(
                "DIETClassifier transformer_size must be a multiple of number_of_attention_heads.",
                context.config_file,
                fix="e.g. transformer_size: 256 with number_of_attention_heads: 4.",
            )
        self.model: DIETModel | None = None
        self.intents: list[str] = []
        self.tag_sets: dict[str, list[str]] = {}
        self.dims: dict[str, int] = {}
        self.sparse_blocks: dict[str, list[list[Any]]] = {}
        self._base: DIETClassifier | None = None
        self._epoch_fraction = 1.0

    def finetune_from(self, base: Component, epoch_fraction: float) -> None:
        """Rasa's incremental training: the next ``train`` starts from ``base``'s weights
        (sparse layers grown for the featurizers' new columns) and runs ``epoch_fraction``
        of the configured epochs (rounded up, as in Rasa)."""
        if not isinstance(base, DIETClassifier):
            raise ConfigError(f"Cannot fine-tune {self.name} from a {type(base).__name__}.",
                              self.context.config_file, fix="Train without --finetune.")
        self._base = base
        self._epoch_fraction = float(epoch_fraction)

    # ---- training
    def _featurizer_filter(self, message: Message) -> Message:
        wanted = self.selected_featurizers
        if not wanted:
            return message
        feats = [f for f in (message.get(FEATURES) or []) if f.origin in wanted]
        return Message(message.text, {**message.data, FEATURES: feats})

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        cfg = self.config
        seed = cfg["random_seed"]
        if seed is not None:
            torch.manual_seed(int(seed))
            random.seed(int(seed))
            np.random.seed(int(seed))
        usable = [m for m in messages if m.text.strip() and (m.intent or m.entities)]
        if cfg["intent_classification"]:
            self.intents = sorted({m.intent for m in usable if m.intent})
        bilou = bool(cfg["BILOU_flag"])
        if cfg["entity_recognition"]:
            entities = sorted({e["entity"] for m in usable for e in m.entities})
            roles = sorted({e["role"] for m in usable for e in m.entities if e.get("role")})
            groups = sorted({e["group"] for m in usable for e in m.entities if e.get("group")})
            if entities:
                self.tag_sets["entity"] = bilou_tags(entities, bilou)
            if roles:
                self.tag_sets["role"] = bilou_tags(roles, bilou)
            if groups:
                self.tag_sets["group"] = bilou_tags(groups, bilou)
        if not usable or (not self.intents and not self.tag_sets):
            logger.warning("DIETClassifier has nothing to learn (no intents or entities); skipped.")
            return
        arrays = [message_arrays(self._featurizer_filter(m)) for m in usable]
        self.dims = {
            key: next((a[key].shape[1] for a in arrays if a[key] is not None), 0)
            for key in ("seq_sparse", "sent_sparse", "seq_dense", "sent_dense")
        }
        intent_ids = [self.intents.index(m.intent) if m.intent in self.intents else -1 for m in usable]
        tags: dict[str, list[list[int]]] = {key: [] for key in self.tag_sets}
        for m, a in zip(usable, arrays):
            toks = tokens_of(m)[: a["n"]]
            for key, tagset in self.tag_sets.items():
                names = token_tags(toks, m.entities, key, bilou)
                tags[key].append([tagset.index(t) if t in tagset else 0 for t in names])
        # featurised once, before the epoch loop; COO once too, so each epoch's batches
        # only concatenate index arrays
        for a in arrays:
            for key in ("seq_sparse", "sent_sparse"):
                if a[key] is not None:
                    a[key] = a[key].tocoo()
        first = next((m for m in usable if m.get(FEATURES)), usable[0])
        self.sparse_blocks = sparse_blocks(self._featurizer_filter(first))
        self.model = DIETModel(self.dims, len(self.intents), self.tag_sets, cfg)
        epochs = int(cfg["epochs"])
        if self._base is not None:
            self._continue_from_base()
            epochs = max(1, math.ceil(epochs * self._epoch_fraction))
            logger.info("DIETClassifier fine-tunes the previous model for %d of %d epochs.", epochs, cfg["epochs"])
        most, tune = training_threads(len(arrays))
        logger.debug("DIET trains %d examples on up to %d torch thread(s).", len(arrays), most)
        before = torch.get_num_threads()
        try:
            self._fit(arrays, intent_ids, tags, EpochThreads(most, tune), epochs=epochs)
        finally:
            torch.set_num_threads(before)
            self._base = None  # the previous model is not needed (nor kept in memory) any more

    def _continue_from_base(self) -> None:
        """Load the fine-tuned model's weights into the new model (``finetune_from``)."""
        base, model = self._base, self.model
        assert base is not None and model is not None
        fix = "Train without --finetune, or undo the change."
        if base.model is None:
            raise ConfigError("Cannot fine-tune DIETClassifier: the previous model has no trained DIET.",
                              self.context.config_file, fix="Train without --finetune.")
        if base.intents != self.intents or base.tag_sets != self.tag_sets:
            added = sorted(set(self.intents) - set(base.intents))
            gone = sorted(set(base.intents) - set(self.intents))
            raise ConfigError(
                "Cannot fine-tune DIETClassifier: the NLU data's labels changed"
                + (f" (new intents: {', '.join(added)})" if added else "")
                + (f" (intents without examples now: {', '.join(gone)})" if gone else "")
                + ("" if added or gone else " (entities, roles or groups)") + ".",
                self.context.config_file, fix=fix)
        if not base.sparse_blocks:
            raise ConfigError("Cannot fine-tune DIETClassifier: the previous model was trained by an older "
                              "kefu that did not record its feature layout.",
                              self.context.config_file, fix="Train once without --finetune.")
        state = base.model.state_dict()
        for key, layer in (("seq_sparse", model.seq_sparse), ("sent_sparse", model.sent_sparse)):
            old_blocks, new_blocks = base.sparse_blocks.get(key, []), self.sparse_blocks.get(key, [])
            if [b[0] for b in old_blocks] != [b[0] for b in new_blocks] or any(
                    n[1] < o[1] for o, n in zip(old_blocks, new_blocks)):
                raise ConfigError(
                    f"Cannot fine-tune DIETClassifier: its input features changed ({old_blocks} -> {new_blocks}).",
                    self.context.config_file, fix=fix)
            if layer is not None and f"{key}.weight" in state:
                state[f"{key}.weight"] = grow_sparse_weight(state[f"{key}.weight"], layer.weight.detach(),
                                                            old_blocks, new_blocks)
        for key in ("seq_dense", "sent_dense"):
            if base.dims.get(key) != self.dims.get(key):
                raise ConfigError(f"Cannot fine-tune DIETClassifier: the dense features' width changed "
                                  f"({base.dims.get(key)} -> {self.dims.get(key)}).", self.context.config_file, fix=fix)
        model.load_state_dict(state)

    def _fit(self, arrays: list[dict[str, Any]], intent_ids: list[int], tags: dict[str, list[list[int]]],
             threads: EpochThreads | None = None, epochs: int | None = None) -> None:
        """Rasa's training loop: Adam, batch size growing linearly over the epochs.

        Batches are drawn as Rasa does: shuffled every epoch and, with Rasa's default
        ``batch_strategy: balanced``, rebalanced so rare intents are repeated
        (``balanced_order``). That order is cut into windows of a few batches that are
        sorted by length before being split, so a batch pads to similar lengths (far less
        transformer work on mixed-length data) while its examples stay random
        (``length_bucketed_batches``). ``evaluate_on_number_of_examples`` holds that many
        examples out and, with ``checkpoint_model``, the weights of the epoch that scored
        best on them are kept, as in Rasa.
        """
        assert self.model is not None
        cfg = self.config
        model = self.model
        reg = float(cfg["regularization_constant"])
        # Rasa adds reg * sum(w^2) of its dense kernels to the loss; its gradient 2 * reg * w
        # is exactly Adam's (non-decoupled) weight_decay on those weights
        regularized = {id(m.weight) for m in model.regularized_layers()}
        opt = torch.optim.Adam([
            {"params": [p for p in model.parameters() if id(p) in regularized], "weight_decay": 2 * reg},
            {"params": [p for p in model.parameters() if id(p) not in regularized]},
        ], lr=float(cfg["learning_rate"]), **fused_adam())
        epochs = int(cfg["epochs"]) if epochs is None else epochs
        bs = cfg["batch_size"]
        lo, hi = (int(bs[0]), int(bs[-1])) if isinstance(bs, (list, tuple)) else (int(bs), int(bs))
        sparse_drop = float(cfg["drop_rate"]) if cfg["use_sparse_input_dropout"] else 0.0
        num_neg = int(cfg["number_of_negative_examples"])
        cosine = cfg["similarity_type"] == "cosine"
        loss_options = LossOptions.from_config(cfg)
        targets = torch.tensor(intent_ids, dtype=torch.long)
        precision = training_precision(cfg["training_precision"])
        order = list(range(len(arrays)))
        held_out: list[int] = []
        n_eval = int(cfg["evaluate_on_number_of_examples"] or 0)
        if n_eval > 0 and self.intents:
            random.shuffle(order)
            held_out, order = order[:n_eval], order[n_eval:]
        every = max(int(cfg["evaluate_every_number_of_epochs"] or 1), 1)
        best: tuple[float, dict[str, torch.Tensor]] | None = None
        lengths = [a["n"] for a in arrays]
        n = len(order)
        model.train()
        threads = threads or EpochThreads(1, False)
        # Rasa balances on the intent labels; entity-only training has none to balance
        balanced = cfg["batch_strategy"] == "balanced" and bool(self.intents)
        for epoch in range(epochs):
            size = lo + int((hi - lo) * epoch / max(epochs - 1, 1))
            random.shuffle(order)
            total = 0.0
            n_threads = threads.for_epoch(epoch)
            if torch.get_num_threads() != n_threads:
                torch.set_num_threads(n_threads)
            epoch_started = time.perf_counter()
            epoch_order = balanced_order(order, intent_ids, size) if balanced else order
            for idx in length_bucketed_batches(epoch_order, lengths, size):
                batch = make_batch([arrays[i] for i in idx], self.dims, sparse_drop)
                with precision():
                    tokens, sentence = model(batch)
                tokens, sentence = tokens.float(), sentence.float()
                loss = torch.zeros(())
                if self.intents:
                    target = targets[idx]
                    has = target >= 0
                    if bool(has.any()):
                        text = model.text_embed(sentence[has])
                        loss = loss + dot_product_loss(
                            text, model.label_embeddings(), target[has], num_neg, cosine,
                            options=loss_options)
                t = batch["mask"].shape[1]
                for key in self.tag_sets:
                    gold = torch.zeros(len(idx), t, dtype=torch.long)
                    for row, i in enumerate(idx):
                        seq = tags[key][i]
                        if seq:
                            gold[row, : len(seq)] = torch.tensor(seq)
                    emissions = model.taggers[key](tokens)
                    if batch["mask"].any():
                        loss = loss + model.crfs[key].nll(emissions, gold, batch["mask"], loss_options.scale_loss)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            threads.record(epoch, n_threads, time.perf_counter() - epoch_started, n)
            if held_out and ((epoch + 1) % every == 0 or epoch == epochs - 1):
                accuracy = self._accuracy([arrays[i] for i in held_out], targets[held_out])
                logger.info("DIET epoch %d/%d: accuracy on %d held-out examples %.3f",
                            epoch + 1, epochs, len(held_out), accuracy)
                if cfg["checkpoint_model"] and (best is None or accuracy > best[0]):
                    best = (accuracy, {k: v.detach().clone() for k, v in model.state_dict().items()})
                model.train()
            if epoch == epochs - 1 or (epoch + 1) % 50 == 0:
                logger.debug("DIET epoch %d/%d loss %.4f", epoch + 1, epochs, total)
        if best is not None:
            logger.info("DIET keeps the checkpoint with held-out accuracy %.3f", best[0])
            model.load_state_dict(best[1])
        model.eval()

    def _accuracy(self, arrays: list[dict[str, Any]], targets: torch.Tensor) -> float:
        assert self.model is not None
        self.model.eval()
        right = 0
        with torch.inference_mode():
            for start in range(0, len(arrays), 256):
                _, sentence = self.model(make_batch(arrays[start : start + 256], self.dims))
                pred = self.model.similarities(sentence).argmax(1)
                right += int((pred == targets[start : start + 256]).sum())
        return right / max(len(arrays), 1)

    # ---- inference
    def process(self, message: Message) -> None:
        if self.model is None:
            return
        arrays = message_arrays(self._featurizer_filter(message))
        if not has_signal(arrays):
            if self.intents:
                message.set(INTENT, {"name": None, "confidence": 0.0})
                message.set(INTENT_RANKING, [])
            return
        inference_threads()
        tokens_out, sentence = self._forward(arrays)
        if self.intents:
            self._set_intent(message, sentence)
        if self.tag_sets and arrays["n"] > 0:
            new = self._entities(message, tokens_out[0], arrays["n"])
            message.set(ENTITIES, (message.get(ENTITIES) or []) + new)

    def _forward(self, arrays: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.model is not None
        with torch.inference_mode():
            return self.model(make_batch([arrays], self.dims))

    def _set_intent(self, message: Message, sentence: torch.Tensor) -> None:
        assert self.model is not None
        with torch.inference_mode():
            sims = self.model.similarities(sentence)[0].numpy().astype(np.float64)
        conf = self.config["model_confidence"]
        if conf == "softmax":
            probs = np.exp(sims - sims.max())
            probs = probs / probs.sum()
        else:
            probs = np.clip(sims, 0.0, None)
        ranking_length = int(self.config["ranking_length"])
        if self.config["renormalize_confidences"] and ranking_length and conf == "softmax":
            top = np.argsort(-probs)[:ranking_length]
            keep = np.zeros_like(probs)
            keep[top] = probs[top]
            probs = keep / keep.sum()
        intent, ranking = ranking_from_scores(self.intents, probs, ranking_length)
        message.set(INTENT, intent)
        message.set(INTENT_RANKING, ranking)

    def _entities(self, message: Message, outputs: torch.Tensor, n: int) -> list[dict[str, Any]]:
        assert self.model is not None
        bilou = bool(self.config["BILOU_flag"])
        tokens = tokens_of(message)[:n]
        decoded: dict[str, tuple[list[str], np.ndarray]] = {}
        with torch.inference_mode():
            for key, tagset in self.tag_sets.items():
                emissions = self.model.taggers[key](outputs)
                path = self.model.crfs[key].decode(emissions, n)
                probs = torch.softmax(emissions, -1).numpy()
                conf = np.array([probs[i, p] for i, p in enumerate(path)])
                decoded[key] = ([tagset[p] for p in path], conf)
        if "entity" not in decoded:
            return []
        entity_tags, entity_conf = decoded["entity"]
        results = []
        for first, last, label in tag_spans(entity_tags, bilou):
            start, end = tokens[first].start, tokens[last].end
            entity: dict[str, Any] = {
                "entity": label,
                "start": start,
                "end": end,
                "value": message.text[start:end],
                "confidence_entity": float(entity_conf[first : last + 1].mean()),
                "extractor": self.name,
            }
            for key in ("role", "group"):
                if key in decoded:
                    sub_tags, sub_conf = decoded[key]
                    labels = [
                        (t[2:] if bilou else t) for t in sub_tags[first : last + 1] if t != NO_ENTITY
                    ]
                    if labels:
                        entity[key] = max(set(labels), key=labels.count)
                        entity[f"confidence_{key}"] = float(sub_conf[first : last + 1].mean())
            results.append(entity)
        return self._split_by_comma(results, message)

    def _split_by_comma(self, entities: list[dict[str, Any]], message: Message) -> list[dict[str, Any]]:
        setting = self.config["split_entities_by_comma"]
        out = []
        for e in entities:
            split = setting.get(e["entity"], True) if isinstance(setting, dict) else bool(setting)
            if not split or "," not in e["value"]:
                out.append(e)
                continue
            pos = e["start"]
            for part in e["value"].split(","):
                stripped = part.strip()
                if stripped:
                    s = max(message.text.find(stripped, pos), pos)
                    out.append({**e, "start": s, "end": s + len(stripped), "value": stripped})
                pos += len(part) + 1
        return out

    # ---- persistence
    def persist(self, path: Path) -> None:
        meta = {"intents": self.intents, "tag_sets": self.tag_sets, "dims": self.dims,
                "trained": self.model is not None, "sparse_weight_layout": SPARSE_WEIGHT_LAYOUT,
                "sparse_blocks": self.sparse_blocks}
        (path / "diet.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if self.model is not None:
            torch.save(self.model.state_dict(), path / "diet.pt")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "DIETClassifier":
        c = cls(config, context)
        meta = json.loads((path / "diet.json").read_text(encoding="utf-8"))
        c.intents, c.tag_sets, c.dims = meta["intents"], meta["tag_sets"], meta["dims"]
        c.sparse_blocks = meta.get("sparse_blocks") or {}
        if meta["trained"]:
            c.model = DIETModel(c.dims, len(c.intents), c.tag_sets, c.config)
            state = torch.load(path / "diet.pt", weights_only=True)
            if meta.get("sparse_weight_layout") != SPARSE_WEIGHT_LAYOUT:
                # saved before SparseDense: nn.Linear's (units, features) weights
                for key in ("seq_sparse.weight", "sent_sparse.weight"):
                    if key in state:
                        state[key] = state[key].t().contiguous()
            c.model.load_state_dict(state)
            c.model.eval()
        return c
