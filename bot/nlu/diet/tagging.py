"""Entity tags for DIET: BILOU tags per token, tag spans back to entities, and Rasa's CRF
(transitions limited to the ones BILOU allows)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bot.nlu.diet.losses import scaled_loss

NO_ENTITY = "O"


def bilou_tags(names: list[str], use_bilou: bool) -> list[str]:
    tags = [NO_ENTITY]
    for n in sorted(names):
        tags.extend([f"B-{n}", f"I-{n}", f"L-{n}", f"U-{n}"] if use_bilou else [n])
    return tags


def token_tags(tokens: list[Any], entities: list[dict[str, Any]], key: str, use_bilou: bool) -> list[str]:
    """Tag per token for the entity attribute ``key`` (entity / role / group)."""
    tags = [NO_ENTITY] * len(tokens)
    for e in entities:
        label = e.get(key)
        if not label:
            continue
        idx = [i for i, t in enumerate(tokens) if t.start < e["end"] and t.end > e["start"]]
        if not idx:
            continue
        if not use_bilou:
            for i in idx:
                tags[i] = label
        elif len(idx) == 1:
            tags[idx[0]] = f"U-{label}"
        else:
            tags[idx[0]] = f"B-{label}"
            for i in idx[1:-1]:
                tags[i] = f"I-{label}"
            tags[idx[-1]] = f"L-{label}"
    return tags


def tag_spans(tags: list[str], use_bilou: bool) -> list[tuple[int, int, str]]:
    """(first token, last token, label) spans from a decoded tag sequence."""
    spans: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tags):
        tag = tags[i]
        if tag == NO_ENTITY:
            i += 1
            continue
        label = tag[2:] if use_bilou else tag
        j = i
        if use_bilou and tag.startswith("B-"):
            while j + 1 < len(tags) and tags[j + 1][2:] == label and tags[j + 1][:2] in ("I-", "L-"):
                j += 1
                if tags[j].startswith("L-"):
                    break
        elif not use_bilou:
            while j + 1 < len(tags) and tags[j + 1] == label:
                j += 1
        spans.append((i, j, label))
        i = j + 1
    return spans


def allowed_transitions(tags: list[str], use_bilou: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BILOU grammar: (from, to) matrix, allowed start tags, allowed end tags."""
    k = len(tags)
    trans = np.ones((k, k), dtype=bool)
    start = np.ones(k, dtype=bool)
    end = np.ones(k, dtype=bool)
    if not use_bilou:
        return trans, start, end
    for a, ta in enumerate(tags):
        pa, la = ta[:2], ta[2:]
        for b, tb in enumerate(tags):
            pb, lb = tb[:2], tb[2:]
            if pa in ("B-", "I-"):
                trans[a, b] = pb in ("I-", "L-") and lb == la
            else:  # O, L-, U- : next must start fresh
                trans[a, b] = tb == NO_ENTITY or pb in ("B-", "U-")
        start[a] = ta == NO_ENTITY or pa in ("B-", "U-")
        end[a] = ta == NO_ENTITY or pa in ("L-", "U-")
    return trans, start, end


class CRF(nn.Module):
    """Linear-chain CRF with hard grammar constraints (invalid BILOU paths get -inf)."""

    def __init__(self, tags: list[str], use_bilou: bool) -> None:
        super().__init__()
        k = len(tags)
        self.transitions = nn.Parameter(torch.zeros(k, k))
        trans, start, end = allowed_transitions(tags, use_bilou)
        neg = -1e4
        self.register_buffer("trans_mask", torch.tensor(np.where(trans, 0.0, neg), dtype=torch.float32))
        self.register_buffer("start_mask", torch.tensor(np.where(start, 0.0, neg), dtype=torch.float32))
        self.register_buffer("end_mask", torch.tensor(np.where(end, 0.0, neg), dtype=torch.float32))

    def _trans(self) -> torch.Tensor:
        return self.transitions + self.trans_mask

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
            scale_loss: bool = False) -> torch.Tensor:
        """Mean negative log-likelihood; emissions (B,T,K), tags/mask (B,T). ``scale_loss``:
        each sequence weighted as Rasa's CRF layer does (``losses.scaled_loss``)."""
        b, t, _ = emissions.shape
        trans = self._trans()
        maskf = mask.float()
        # score of the gold path
        score = self.start_mask[tags[:, 0]] + emissions[:, 0].gather(1, tags[:, :1]).squeeze(1)
        for i in range(1, t):
            step = trans[tags[:, i - 1], tags[:, i]] + emissions[:, i].gather(1, tags[:, i : i + 1]).squeeze(1)
            score = score + step * maskf[:, i]
        lengths = mask.long().sum(1).clamp(min=1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        score = score + self.end_mask[last]
        # partition function
        alpha = self.start_mask.unsqueeze(0) + emissions[:, 0]
        for i in range(1, t):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, i]
            alpha = torch.where(mask[:, i : i + 1], nxt, alpha)
        log_z = torch.logsumexp(alpha + self.end_mask.unsqueeze(0), dim=1)
        valid = mask[:, 0].float()
        per_row = log_z - score
        if scale_loss:
            per_row = scaled_loss(per_row)
        return (per_row * valid).sum() / valid.sum().clamp(min=1.0)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, length: int) -> list[int]:
        """Viterbi path for one sequence; emissions (T,K)."""
        if length == 0:
            return []
        trans = self._trans()
        score = self.start_mask + emissions[0]
        back = []
        for i in range(1, length):
            total = score.unsqueeze(1) + trans
            best, idx = total.max(0)
            back.append(idx)
            score = best + emissions[i]
        score = score + self.end_mask
        path = [int(score.argmax())]
        for idx in reversed(back):
            path.append(int(idx[path[-1]]))
        return path[::-1]
