"""DIET's training data: the arrays of a featurised message, Rasa's balanced epoch order,
length-bucketed batches and the tensors of one batch (packed sparse rows as CSR)."""
from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from bot.nlu.base import FEATURES, Features, tokens_of
from bot.nlu.diet.model import MAX_SEQUENCE_LENGTH
from bot.shared.training_data.nlu import Message

BATCH_STRATEGIES = ("balanced", "sequence")


def balanced_order(order: list[int], labels: list[int], size: int) -> list[int]:
    """Rasa's ``batch_strategy: balanced`` (``RasaModelData._balanced_data``, Rasa 3.6).

    ``order`` is the epoch's shuffled order and ``labels`` the label of each example.
    Rounds visit the labels in a random order; each visit takes the next
    ``int(count / n * size) + 1`` examples of that label (so a label is drawn in
    proportion to its size, and every label at least once a round). A label that has
    been gone through once is taken only every other round from then on, and the epoch
    ends as soon as every label has been gone through once. Rare labels are therefore
    repeated (an epoch can be longer than the data) and appear in about every other
    batch, which is how Rasa's DIET learns intents with two or three examples.
    """
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(labels[i], []).append(i)
    keys = sorted(groups)
    n = len(order)
    counts = [len(groups[k]) for k in keys]
    taken = [0] * len(keys)
    gone_through = [False] * len(keys)
    skipped = [False] * len(keys)
    left = len(keys)  # labels not gone through yet
    out: list[int] = []
    while left:
        for j in random.sample(range(len(keys)), len(keys)):
            if gone_through[j] and not skipped[j]:
                skipped[j] = True
                continue
            skipped[j] = False
            take = int(counts[j] / n * size) + 1
            out.extend(groups[keys[j]][taken[j] : taken[j] + take])
            taken[j] += take
            if taken[j] >= counts[j]:
                taken[j] = 0
                if not gone_through[j]:
                    gone_through[j] = True
                    left -= 1
            if not left:
                break
    return out


def length_bucketed_batches(order: list[int], lengths: list[int], size: int,
                            window: int = 8) -> list[list[int]]:
    """Batches of ``size`` from the shuffled ``order``: each window of ``window`` batches is
    sorted by length before it is split, and the batches are shuffled again.

    An epoch always has at least two windows (smaller ones for a small epoch): sorted whole,
    it would split into the same batches every epoch (the shortest messages always
    together). One of fewer than four batches is cut as it comes (Rasa's random batches),
    each batch then ordered by length, which changes nothing but the attention groups
    (``attention_groups``; rows are independent and the loss draws its negatives by index).
    """
    n_batches = -(-len(order) // size)
    window = min(window, n_batches // 2)
    if window < 2:
        return [sorted(order[i : i + size], key=lengths.__getitem__) for i in range(0, len(order), size)]
    span = size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lengths.__getitem__)
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    random.shuffle(batches)
    return batches


# --------------------------------------------------------------------------- data


def _stack(features: list[Features], kind: str, attr: str, n_rows: int) -> Any:
    mats = [getattr(f, attr) for f in features if f.kind == kind and getattr(f, attr) is not None]
    if not mats:
        return None
    if kind == "sparse":
        return sp.hstack([sp.csr_matrix(m) for m in mats], format="csr")
    return np.hstack([np.asarray(m, dtype=np.float32) for m in mats])


def message_arrays(message: Message) -> dict[str, Any]:
    feats: list[Features] = message.get(FEATURES) or []
    n = min(len(tokens_of(message)), MAX_SEQUENCE_LENGTH)
    out = {
        "n": n,
        "seq_sparse": _stack(feats, "sparse", "sequence", n),
        "sent_sparse": _stack(feats, "sparse", "sentence", 1),
        "seq_dense": _stack(feats, "dense", "sequence", n),
        "sent_dense": _stack(feats, "dense", "sentence", 1),
    }
    if out["seq_sparse"] is not None:
        out["seq_sparse"] = out["seq_sparse"][:n]
    if out["seq_dense"] is not None:
        out["seq_dense"] = out["seq_dense"][:n]
    return out


def sparse_blocks(message: Message) -> dict[str, list[list[Any]]]:
    """The sparse featurizers' column blocks in the order ``message_arrays`` stacks them:
    ``{"seq_sparse": [[origin, width], ...], "sent_sparse": [...]}``. Fine-tuning maps a
    grown vocabulary's columns back onto the old model's with it (``grow_sparse_weight``)."""
    feats: list[Features] = message.get(FEATURES) or []
    return {
        key: [[f.origin, int(getattr(f, attr).shape[1])] for f in feats
              if f.kind == "sparse" and getattr(f, attr) is not None]
        for key, attr in (("seq_sparse", "sequence"), ("sent_sparse", "sentence"))
    }


def grow_sparse_weight(old: torch.Tensor, new: torch.Tensor, old_blocks: list[list[Any]],
                       new_blocks: list[list[Any]]) -> torch.Tensor:
    """``new`` (a freshly initialised ``(features, units)`` sparse-to-dense weight) with each
    featurizer block's old rows copied to the start of that block: fine-tuned featurizers
    keep their old columns and append new ones (``extend_vocabulary``), as Rasa 3's
    ``adjust_sparse_layers_for_incremental_training`` does. New rows keep their random start."""
    out = new.clone()
    o = n = 0
    for (_, old_width), (_, new_width) in zip(old_blocks, new_blocks):
        out[n : n + old_width] = old[o : o + old_width]
        o += old_width
        n += new_width
    return out


def has_signal(arrays: dict[str, Any]) -> bool:
    """False when nothing the model knows was found (Rasa then predicts no intent)."""
    for key in ("seq_sparse", "sent_sparse"):
        if arrays[key] is not None and arrays[key].nnz > 0:
            return True
    for key in ("seq_dense", "sent_dense"):
        if arrays[key] is not None and np.any(arrays[key]):
            return True
    return False


def make_batch(items: list[dict[str, Any]], dims: dict[str, int],
               sparse_dropout: float = 0.0) -> dict[str, torch.Tensor]:
    """The tensors of one batch; sparse token features packed (one row per real token),
    as CSR (what ``SparseDense`` reads: column indices and row offsets)."""
    b = len(items)
    t = max(1, max(it["n"] for it in items))
    lengths = torch.tensor([it["n"] for it in items])
    # one comparison, not a slice assignment per row (two tensor ops each, ~500 per batch)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    batch: dict[str, torch.Tensor] = {"mask": mask, "lengths": lengths}

    def sparse(key: str, rows_per_item: int) -> torch.Tensor:
        rows, cols, vals = [], [], []
        for i, it in enumerate(items):
            m = it[key]
            if m is None:
                continue
            coo = m.tocoo()
            rows.append(coo.row + (offsets[i] if rows_per_item == 0 else i * rows_per_item))
            cols.append(coo.col)
            vals.append(coo.data)
        if rows:
            r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            r = c = np.zeros(0, dtype=np.int64)
            v = np.zeros(0, dtype=np.float32)
        values = torch.tensor(v, dtype=torch.float32)
        if sparse_dropout > 0 and len(values):
            # Rasa's SparseDropout: tf.sparse.retain, the kept values are not rescaled
            values = values * (torch.rand(len(values)) >= sparse_dropout).float()
        n_rows = b * rows_per_item if rows_per_item else int(offsets[-1])
        # CSR built directly (the rows arrive in order)
        if len(r) > 1 and not bool(np.all(r[1:] >= r[:-1])):
            order = np.argsort(r, kind="stable")
            r, c, values = r[order], c[order], values[torch.from_numpy(order)]
        crow = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n_rows), out=crow[1:])
        with warnings.catch_warnings():  # "sparse CSR support is in beta": only its index arrays are read
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                torch.from_numpy(crow), torch.from_numpy(c.astype(np.int64)), values, (n_rows, dims[key]),
                check_invariants=False,
            )

    offsets = np.concatenate([[0], np.cumsum([it["n"] for it in items])])
    if dims["seq_sparse"]:
        # packed: one row per real token, row after row (no padding rows)
        batch["seq_sparse"] = sparse("seq_sparse", 0)
    if dims["sent_sparse"]:
        batch["sent_sparse"] = sparse("sent_sparse", 1)
    if dims["seq_dense"]:
        arr = np.zeros((b, t, dims["seq_dense"]), dtype=np.float32)
        for i, it in enumerate(items):
            if it["seq_dense"] is not None:
                arr[i, : it["n"]] = it["seq_dense"]
        batch["seq_dense"] = torch.from_numpy(arr)
    if dims["sent_dense"]:
        arr = np.zeros((b, dims["sent_dense"]), dtype=np.float32)
        for i, it in enumerate(items):
            if it["sent_dense"] is not None:
                arr[i] = it["sent_dense"][0]
        batch["sent_dense"] = torch.from_numpy(arr)
    return batch
