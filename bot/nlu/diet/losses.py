"""Rasa's ``SingleLabelDotProductLoss`` and ``_scale_loss`` (rasa/utils/tensorflow/layers.py):
DIET's intent loss over sampled negatives, cross-entropy or margin, and the loss scaling its
CRF shares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LossOptions:
    """Rasa's loss options (``SingleLabelDotProductLoss``): ``loss_type`` cross_entropy or
    margin; ``constrain_similarities`` and ``scale_loss`` for cross-entropy; the margins
    ``maximum_positive_similarity`` (mu_pos), ``maximum_negative_similarity`` (mu_neg),
    ``use_maximum_negative_similarity`` and ``negative_margin_scale`` (neg_lambda) for margin."""

    loss_type: str = "cross_entropy"
    constrain: bool = False
    scale_loss: bool = False
    mu_pos: float = 0.8
    mu_neg: float = -0.4
    use_max_sim_neg: bool = True
    neg_lambda: float = 0.8

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "LossOptions":
        """From a DIETClassifier config (its defaults filled in)."""
        return cls(str(cfg["loss_type"]), bool(cfg["constrain_similarities"]), bool(cfg["scale_loss"]),
                   float(cfg["maximum_positive_similarity"]), float(cfg["maximum_negative_similarity"]),
                   bool(cfg["use_maximum_negative_similarity"]), float(cfg["negative_margin_scale"]))


LOSS_TYPES = ("cross_entropy", "margin")


def dot_product_loss(text: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                     num_negatives: int, cosine: bool = False, options: LossOptions | None = None) -> torch.Tensor:
    """Rasa's ``SingleLabelDotProductLoss`` (rasa/utils/tensorflow/layers.py).

    ``text`` (B,E) are the CLS embeddings, ``labels`` (K,E) every intent's embedding,
    ``target`` (B) the gold intent ids. For each example the positive similarity competes
    with ``num_negatives`` negatives of four kinds, each drawn uniformly with replacement
    (negatives that turn out to share the gold label are masked out, as Rasa does):
    text-vs-other-label, gold-label-vs-other-label, text-vs-texts-of-other-labels in the
    batch and gold-label-vs-those-texts. Only the first kind exists at inference; the
    other three keep the label and text embeddings apart from each other, which is what
    makes DIET generalise from few examples. ``options`` picks Rasa's loss
    (``combine_similarities``; default: cross-entropy without constraint).
    """
    options = options or LossOptions()
    if cosine:
        text = nn.functional.normalize(text, dim=-1)
        labels = nn.functional.normalize(labels, dim=-1)
    b, k = text.shape[0], labels.shape[0]
    pos_label = labels[target]  # (B,E)
    sim_pos = (text * pos_label).sum(-1, keepdim=True)
    neg_inf = torch.finfo(text.dtype).min / 2
    n = max(int(num_negatives), 1)

    label_ids = torch.randint(0, k, (b, n))
    bad_labels = label_ids == target.unsqueeze(1)
    neg_labels = labels[label_ids]  # (B,n,E)
    sim_il = torch.einsum("be,bne->bn", text, neg_labels).masked_fill(bad_labels, neg_inf)
    sim_ll = torch.einsum("be,bne->bn", pos_label, neg_labels).masked_fill(bad_labels, neg_inf)
    sim_ii = sim_li = None
    if b > 1:
        text_ids = torch.randint(0, b, (b, n))
        bad_texts = target[text_ids] == target.unsqueeze(1)
        neg_texts = text[text_ids]
        sim_ii = torch.einsum("be,bne->bn", text, neg_texts).masked_fill(bad_texts, neg_inf)
        sim_li = torch.einsum("be,bne->bn", pos_label, neg_texts).masked_fill(bad_texts, neg_inf)
    return combine_similarities(sim_pos, sim_il, sim_ll, sim_ii, sim_li, options)


def combine_similarities(sim_pos: torch.Tensor, sim_il: torch.Tensor, sim_ll: torch.Tensor,
                         sim_ii: torch.Tensor | None, sim_li: torch.Tensor | None,
                         options: LossOptions) -> torch.Tensor:
    """The batch's loss from its similarities, as Rasa's ``_loss_cross_entropy`` and
    ``_loss_margin`` compute it. ``sim_pos`` (B,1); the negatives (B,n), masked ones very
    negative; ``sim_ii``/``sim_li`` (text negatives) None for a batch of one.

    Cross-entropy: a softmax over the positive, text-label and label-text similarities, with
    label-label and text-text added unless ``constrain`` (Rasa's constrain_similarities, which
    instead adds a sigmoid term pulling the positive to 1 and every negative to 0, averaged
    over all of them); ``scale_loss`` weights each example by ((1 - p) / 0.5)^4, p its
    likelihood, once some example in the batch is above 0.5 (no gradient through the weight).
    Margin: the positive pushed above ``mu_pos``, the (largest, or every) text-label negative
    below ``-mu_neg``, and the largest of each other kind too, weighted ``neg_lambda``.
    """
    texts = [s for s in (sim_ii, sim_li) if s is not None]
    if options.loss_type == "margin":
        relu = nn.functional.relu
        loss = relu(options.mu_pos - sim_pos.squeeze(1))
        if options.use_max_sim_neg:
            loss = loss + relu(options.mu_neg + sim_il.max(1).values)
        else:
            loss = loss + relu(options.mu_neg + sim_il).sum(1)
        for other in (sim_ll, *texts):
            loss = loss + options.neg_lambda * relu(options.mu_neg + other.max(1).values)
        return loss.mean()
    softmax_parts = [sim_pos, sim_il] + ([sim_li] if sim_li is not None else [])
    if not options.constrain:
        softmax_parts += [sim_ll] + ([sim_ii] if sim_ii is not None else [])
    logits = torch.cat(softmax_parts, 1)
    loss = nn.functional.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long), reduction="none")
    if options.constrain:
        every = torch.cat([sim_pos, sim_il, sim_ll, *texts], 1)
        labels_01 = torch.zeros_like(every)
        labels_01[:, 0] = 1.0
        sigmoid = nn.functional.binary_cross_entropy_with_logits(every, labels_01, reduction="none")
        loss = loss + sigmoid.mean(1)
    if options.scale_loss:
        loss = scaled_loss(loss)
    return loss.mean()


def scaled_loss(loss: torch.Tensor) -> torch.Tensor:
    """Rasa's ``_scale_loss``: each example's loss weighted ((1 - p) / 0.5)^4, p = exp(-loss)
    its likelihood, once some example of the batch is above 0.5 (no gradient through the
    weight), so learned examples weigh less."""
    p = torch.exp(-loss.detach())
    return loss * ((1 - p) / 0.5) ** 4 if bool(p.max() > 0.5) else loss
