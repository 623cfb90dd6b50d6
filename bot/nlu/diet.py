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

import contextlib
import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from bot.nlu.base import (
    ENTITIES, FEATURES, INTENT, INTENT_RANKING, Component, Features, PipelineContext,
    ranking_from_scores, tokens_of,
)
from bot.shared.concurrency import usable_cores
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)

NO_ENTITY = "O"
MAX_SEQUENCE_LENGTH = 256  # tokens seen by the transformer; longer messages are truncated



#: training sets at least this big try a second intra-op thread (see ``EpochThreads``)
THREAD_TUNING_MIN_EXAMPLES = 300


def env_torch_threads(default: int | None = 1) -> int | None:
    """``KEFU_TORCH_THREADS`` as a number of torch intra-op threads (unset or empty:
    ``default``; 0 leaves torch's own choice). Anything else is a ConfigError naming it."""
    raw = os.environ.get("KEFU_TORCH_THREADS", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"KEFU_TORCH_THREADS must be a whole number of threads (0 or more), not {raw!r}")
    return value


def inference_threads() -> None:
    """Parsing runs on ``KEFU_TORCH_THREADS`` (default one) intra-op threads, set once for
    the calling thread (torch's count is per thread; the Agent sets it when it starts), not
    switched for each message and back: two calls less per parse (a second pass over 400
    Banking77 messages, Rasa's default pipeline: 4.00 against 4.26 ms mean, one run)."""
    wanted = env_torch_threads()
    if wanted and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def training_threads(n_examples: int) -> tuple[int, bool]:
    """The most intra-op threads DIET may train ``n_examples`` on, and whether to tune.

    ``KEFU_TORCH_THREADS`` fixes the count. Otherwise data of at least
    ``THREAD_TUNING_MIN_EXAMPLES`` may use up to two cores, chosen epoch by epoch from
    measured time (``EpochThreads``): a second thread helps on an idle machine but made
    a step 4.7x more expensive while another job held the other core (2026-12-07), and
    the load changes during a training, so no reading taken when it starts can decide.
    Demo-size data keeps one thread (its epochs are too short to measure).
    """
    fixed = env_torch_threads(None)
    if fixed is not None:
        return fixed, False
    cores = usable_cores()
    if n_examples < THREAD_TUNING_MIN_EXAMPLES or cores < 2:
        return 1, False
    return min(2, cores), True


class EpochThreads:
    """Picks the thread count of each epoch from the measured wall time per example.

    Epoch 0 warms up on one thread; epochs 1 and 2 try one and ``most`` threads; from then
    on the faster one is used, and the other is tried again for a single epoch every
    ``probe_every`` epochs (adjacent epochs have near-equal batch sizes, so their times
    compare). More threads are only tried while a core looks free (``_room``), and a probe
    that loses or is skipped doubles the wait before the next one.
    """

    def __init__(self, most: int, tune: bool, probe_every: int = 10) -> None:
        self.most = max(int(most), 1)
        self.tune = tune and self.most > 1
        self.current = 1 if self.tune else self.most
        self.per_example: dict[int, float] = {}
        self.wait = probe_every
        self.next_probe = 3 + probe_every

    def for_epoch(self, epoch: int) -> int:
        if not self.tune:
            return self.current
        if epoch in (1, 2):
            return self.most if epoch == 2 and self._room() else 1
        if epoch == self.next_probe:
            if self.current == 1 and not self._room():
                self.wait *= 2  # no core free: trying would only cost (see _room)
                self.next_probe = epoch + self.wait
                return 1
            return self.most if self.current == 1 else 1
        return self.current

    def _room(self) -> bool:
        """Whether a core looks free for a second thread: the 1-minute load average (this
        training's own thread included) below ``most - 0.5``. Measured on the shared 2-core
        box at load 6: an epoch on two threads took 9x the CPU of one and more wall time
        (spin-waiting for a descheduled peer), so trying two threads there is all cost."""
        try:
            return os.getloadavg()[0] < self.most - 0.5
        except OSError:
            return False

    def record(self, epoch: int, threads: int, seconds: float, examples: int) -> None:
        if not self.tune or epoch == 0:
            return
        self.per_example[threads] = seconds / max(examples, 1)
        if len(self.per_example) < 2 or epoch < 2:
            return
        best = min(self.per_example, key=self.per_example.__getitem__)
        if epoch == self.next_probe:
            self.wait = self.wait if best != self.current else 2 * self.wait
            self.next_probe = epoch + self.wait
        if best != self.current:
            logger.debug("DIET epoch %d: %d thread(s) now (%.2f ms per example against %.2f)", epoch, best,
                         1000 * self.per_example[best], 1000 * self.per_example[self.current])
        self.current = best


TRAINING_PRECISIONS = ("auto", "float32", "bfloat16")


def fused_adam() -> dict[str, Any]:
    """Adam's fused CPU kernel where this torch has it: the same update (equal to float
    rounding) in one pass over each parameter instead of a dozen, measured 6x faster per
    step on the sparse input layers of a 4 655-word char-n-gram vocabulary (12.5 -> 2.0 ms)."""
    try:
        probe = torch.zeros(1, requires_grad=True)
        torch.optim.Adam([probe], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


def cpu_has_bfloat16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere
    torch emulates it and bfloat16 would be slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def training_precision(setting: str) -> Any:
    """A context factory for the training forward pass.

    bfloat16 autocast: the dense matmuls run in bfloat16 (the sparse-to-dense ones stay float32), measured 3.2x faster
    than float32 for a 1500x256 @ 256x1024 step on an AVX512-BF16 core; parameters, Adam and
    the loss stay float32 (autocast's mixed precision), and parsing runs in float32.
    """
    if setting == "bfloat16" or (setting == "auto" and cpu_has_bfloat16()):
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def torch_threads(wanted: int | None = None) -> Any:
    """Run torch on ``wanted`` threads (default: ``KEFU_TORCH_THREADS`` or 1).

    The matrices here are tiny: on a shared 2-core machine extra intra-op
    threads mostly spin-wait (measured 5x slower with 2 threads under load).
    """
    if wanted is None:
        wanted = env_torch_threads() or 0
    before = torch.get_num_threads()
    if wanted > 0 and wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted > 0 and wanted != before:
            torch.set_num_threads(before)


# --------------------------------------------------------------------------- tags


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

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood; emissions (B,T,K), tags/mask (B,T)."""
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
        return ((log_z - score) * valid).sum() / valid.sum().clamp(min=1.0)

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


# --------------------------------------------------------------------------- model


class ByteDropout(nn.Module):
    """Inverted dropout whose mask comes from random bytes, not floats.

    On CPU the Bernoulli draw costs more than the matmul it follows for the 4x
    feed-forward (measured ~15 ms against ~8 ms per 1.4 M values); a byte compared with
    ``round(rate * 256)`` is the same dropout with the rate rounded to 1/256, and the
    kept values are scaled by the exact keep probability, so expectations are unchanged.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.threshold = min(max(int(round(float(rate) * 256)), 0), 256)
        self.scale = 256.0 / (256 - self.threshold) if self.threshold < 256 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        return x * self.mask(x)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The keep mask already scaled, in ``x``'s dtype (0 or 1 / keep probability).

        ``x * keep * scale`` cast the boolean mask inside the multiply and multiplied twice
        forward and twice backward; one multiply by this mask keeps the same positions,
        measured ~30 % less CPU for dropout on a 4 000 x 1 024 bfloat16 activation. In
        float32 the values are the same; in bfloat16 the scale itself rounds (256/205 ->
        1.25, 0.1 %), so a value may differ by one bfloat16 step (tests/nlu/test_diet.py).
        """
        n = x.numel()
        # eight random bytes per 64-bit draw: an eighth of the generator calls
        bytes_ = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        # the comparison written straight into x's dtype (a boolean mask cast afterwards:
        # 6.8-7.5 ms for a 3 000 x 1 024 bfloat16 mask, this 3.4 ms)
        keep = torch.empty(x.shape, dtype=x.dtype)
        torch.ge(bytes_.view(torch.uint8)[:n].view(x.shape), self.threshold, out=keep)
        return keep.mul_(self.scale)


class MaskedLinear(nn.Linear):
    """Rasa's ``RandomlyConnectedDense``: a dense layer with a fixed random share
    (``density``) of its weights kept, every input and every output still connected."""

    def __init__(self, n_in: int, n_out: int, density: float = 1.0, bias: bool = True) -> None:
        super().__init__(n_in, n_out, bias=bias)
        self.density = float(density)
        if self.density < 1.0:
            keep = torch.rand(n_out, n_in) < self.density
            # a diagonal of ones (wrapped), so no input and no output is cut off
            diag = torch.arange(max(n_in, n_out))
            keep[diag % n_out, diag % n_in] = True
            self.register_buffer("keep", keep.float())
            # the cut weights are zero and their gradient is masked: Adam (and its L2 term)
            # then never moves them, so the forward pass is a plain linear layer
            with torch.no_grad():
                self.weight.mul_(self.keep)
            self.weight.register_hook(lambda grad: grad * self.keep)
        else:
            self.keep = None


#: how ``SparseDense`` stores its weight, written into diet.json (older models lack it)
SPARSE_WEIGHT_LAYOUT = "features_units"


class SparseDense(nn.Module):
    """Rasa's sparse-to-dense layer (a dense kernel applied to sparse features) as an
    embedding bag: each row's output is the sum of its features' weight rows scaled by the
    feature values, plus the bias, which is the same product as ``sparse @ weight``.

    The weight is stored ``(features, units)``, one row per feature, so neither the forward
    pass nor the gradient transposes it: ``torch.sparse.mm`` against ``nn.Linear``'s
    ``(units, features)`` weight copied the 9 051 x 128 kernel (transposed) twice per step
    forward and backward and once more for the gradient: one layer at 64 messages 6.2 -> 3.5
    ms a step in isolation, ~10 ms a step in the training of a 5 000-example Banking77 bot
    (an epoch at batch size 64: 5.8 -> 5.1 CPU-s, docs/nlu.md "Third round"). Models saved
    with the ``(units, features)`` layout load transposed (``DIETClassifier.load``).
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / max(n_in, 1) ** 0.5  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: a sparse CSR (rows, features) tensor; dense (rows, units) out, float32."""
        if x.layout != torch.sparse_csr:
            x = x.to_sparse_csr()
        with torch.autocast("cpu", enabled=False):
            out = nn.functional.embedding_bag(
                x.col_indices(), self.weight, x.crow_indices(), mode="sum",
                per_sample_weights=x.values().float(), include_last_offset=True)
        return out + self.bias


@dataclass(frozen=True)
class AttentionGroup:
    """Consecutive rows of a batch whose attention runs padded to their own longest row."""

    row_start: int
    start: int  # first packed position of the group
    stop: int
    where: tuple[torch.Tensor, torch.Tensor]  # (row in group, column) of each packed position
    valid: torch.Tensor  # (rows, longest) real positions


#: a group of rows ends where its longest row would exceed this many times its shortest
GROUP_LENGTH_RATIO = 2.0
MAX_ATTENTION_GROUPS = 8


def attention_groups(lengths: torch.Tensor) -> list[AttentionGroup]:
    """Split a batch's rows (positions per row, ``lengths``) into runs of similar length.

    Attention of a row only sees that row, so running it per group is the same
    computation; a group pads to its own longest row instead of the batch's. Training
    batches come sorted by length (``length_bucketed_batches``), so a batch whose
    longest message has 70 tokens no longer pads its 10-token messages to 70 (measured
    on Banking77: the padded attention of such batches was most of the attention time).
    Batches in no useful order (more than ``MAX_ATTENTION_GROUPS`` runs) stay one group.
    """
    values = lengths.tolist()
    bounds = [0]
    low = high = values[0] if values else 0
    for i, n in enumerate(values[1:], 1):
        low, high = min(low, n), max(high, n)
        if high > GROUP_LENGTH_RATIO * low:
            bounds.append(i)
            low = high = n
    if len(bounds) > MAX_ATTENTION_GROUPS:
        bounds = [0]
    bounds.append(len(values))
    offsets = [0]
    for n in values:
        offsets.append(offsets[-1] + n)
    groups = []
    for a, b in zip(bounds, bounds[1:]):
        part = lengths[a:b]
        valid = torch.arange(int(part.max())).unsqueeze(0) < part.unsqueeze(1)
        groups.append(AttentionGroup(a, offsets[a], offsets[b], valid.nonzero(as_tuple=True), valid))
    return groups


def padded_rows(n: int) -> int:
    """``n`` rounded up to a multiple of 1/16 to 1/32 of itself (at least 16).

    A training batch's packed positions are padded to this many rows. oneDNN, which runs
    the bfloat16 matmuls, builds (JIT-compiles) a kernel for every new matrix shape and
    caches it: with exact packing nearly every batch has a new row count, and building
    the ~20 kernels of a step cost ~1.5 ms each, more than running them (measured with
    ``ONEDNN_VERBOSE=all`` on a 160-message Banking77 batch: 163 ms of builds against 138
    ms of matmuls over five steps). Rounded counts repeat, so the cache answers; the
    padding rows (at most 6 %, ~3 % on average) are never attended to and never read, so
    they get no gradient and the result is the same.
    """
    granule = max(16, 1 << max(int(n).bit_length() - 5, 0))
    return -(-int(n) // granule) * granule


class EncoderLayer(nn.Module):
    """One pre-norm transformer layer as in Rasa's ``TransformerEncoderLayer``:
    attention without attention dropout, a 4x GELU feed-forward, dropout after each block.

    ``only`` (B,) limits the output to one position per row (the CLS): keys and values
    still come from every token, so that output equals the full layer's at that position
    while the other positions' queries and feed-forward are not computed at all.
    """

    def __init__(self, size: int, heads: int, dropout: float, density: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(size)
        self.query = MaskedLinear(size, size, density, bias=False)
        self.key = MaskedLinear(size, size, density, bias=False)
        self.value = MaskedLinear(size, size, density, bias=False)
        self.out = MaskedLinear(size, size, density)
        self.norm2 = nn.LayerNorm(size)
        self.ff1 = MaskedLinear(size, 4 * size, density)
        self.ff2 = MaskedLinear(4 * size, size, density)
        self.drop = ByteDropout(dropout)

    def forward(self, x: torch.Tensor, groups: list[AttentionGroup],
                only: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, size): the real positions of the batch packed row after row (no
        padding, so the dense layers do no wasted work); attention runs per group of rows
        (``attention_groups``), each padded only to its own longest row."""
        size = x.shape[1]
        split = size // self.heads
        h = self.norm1(x)
        keys, values = self.key(h), self.value(h)
        if only is not None:
            x, h = x[only], h[only]
        queries = self.query(h)
        outs = []
        for g in groups:
            rows, t = g.valid.shape

            def padded(packed: torch.Tensor) -> torch.Tensor:
                out = packed.new_zeros(rows, t, size).index_put(g.where, packed[g.start : g.stop])
                return out.view(rows, t, self.heads, split).transpose(1, 2)

            if only is not None:
                q = queries[g.row_start : g.row_start + rows].view(rows, 1, self.heads, split).transpose(1, 2)
            else:
                q = padded(queries)
            with torch.autocast("cpu", enabled=False):  # CPU attention is slower in bfloat16
                attended = nn.functional.scaled_dot_product_attention(
                    q.float(), padded(keys).float(), padded(values).float(), attn_mask=g.valid[:, None, None, :])
            attended = attended.transpose(1, 2).reshape(rows, -1, size)
            outs.append(attended[:, 0] if only is not None else attended[g.where])
        attended = torch.cat(outs) if len(outs) > 1 else outs[0]
        if attended.shape[0] < x.shape[0]:  # the padding rows of a training batch (padded_rows)
            attended = torch.cat([attended, attended.new_zeros(x.shape[0] - attended.shape[0], size)])
        x = x + self.drop(self.out(attended))
        x = x + self.drop(self.ff2(self.drop(nn.functional.gelu(self.ff1(self.norm2(x))))))
        return x

    def dense_layers(self) -> list[nn.Linear]:
        return [self.query, self.key, self.value, self.out, self.ff1, self.ff2]


class DIETModel(nn.Module):
    """Rasa 3.6's DIET graph for text (rasa/nlu/classifiers/diet_classifier.py).

    Per token: sparse features -> dense (``dense_dimension``), concatenated with dense
    features; the message's sentence features become one more position right after its
    last token (Rasa's ``__CLS__``), so the CLS sits at the same position in training
    (padded batches) and at inference. When token and sentence features differ in width
    both are projected to ``concat_dimension`` first. Then Rasa's transformer encoder:
    input projection to ``transformer_size`` scaled by sqrt(size), sinusoidal positions,
    pre-norm layers with a 4x GELU feed-forward, a final layer norm. The CLS output is
    passed through GELU (as Rasa's ``RasaSequenceLayer`` does), embedded
    (``embedding_dimension``) and compared to the intent embeddings. Dense layers of the
    encoder keep a random ``connection_density`` share of their weights
    (``RandomlyConnectedDense``); dropout follows the sparse-to-dense layer and every block.
    """

    def __init__(self, dims: dict[str, int], num_intents: int, tag_sets: dict[str, list[str]],
                 cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        layers = _per_text(cfg["number_of_transformer_layers"])
        self.dims = dims
        dense_dim = _per_text(cfg["dense_dimension"])
        concat_dim = _per_text(cfg["concat_dimension"])
        self.seq_sparse = SparseDense(dims["seq_sparse"], dense_dim) if dims["seq_sparse"] else None
        self.sent_sparse = SparseDense(dims["sent_sparse"], dense_dim) if dims["sent_sparse"] else None
        seq_in = (dense_dim if dims["seq_sparse"] else 0) + dims["seq_dense"]
        sent_in = (dense_dim if dims["sent_sparse"] else 0) + dims["sent_dense"]
        self.seq_unify: nn.Module = nn.Identity()
        self.sent_unify: nn.Module = nn.Identity()
        width = max(seq_in, sent_in, 1)
        if seq_in != sent_in:
            width = concat_dim
            self.seq_unify = nn.Linear(max(seq_in, 1), concat_dim)
            self.sent_unify = nn.Linear(max(sent_in, 1), concat_dim)
        self.input_drop = ByteDropout(float(cfg["drop_rate"]))
        self.dense_input_dropout = bool(cfg["use_dense_input_dropout"])
        size = _per_text(cfg["transformer_size"]) if layers > 0 else width
        self.size = size
        self.layers = nn.ModuleList()
        density = float(cfg["connection_density"])
        if layers > 0:
            self.embed_in = MaskedLinear(width, size, density)
            self.drop = ByteDropout(float(cfg["drop_rate"]))
            self.layers.extend(
                EncoderLayer(size, int(cfg["number_of_attention_heads"]), float(cfg["drop_rate"]), density)
                for _ in range(layers)
            )
            self.norm = nn.LayerNorm(size)
            self.register_buffer("timing", sinusoid(MAX_SEQUENCE_LENGTH + 1, size), persistent=False)
        #: token outputs are only needed for entity tagging: without it the last layer
        #: computes the CLS position alone
        self.needs_tokens = bool(tag_sets)
        emb = int(cfg["embedding_dimension"])
        self.text_embed = nn.Linear(size, emb)
        self.label_embed = nn.Embedding(max(num_intents, 1), emb)
        nn.init.xavier_uniform_(self.label_embed.weight)
        self.taggers = nn.ModuleDict()
        self.crfs = nn.ModuleDict()
        for key, tags in tag_sets.items():
            self.taggers[key] = nn.Linear(size, len(tags))
            self.crfs[key] = CRF(tags, bool(cfg["BILOU_flag"]))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token outputs (B,T,H) and sentence (CLS) output (B,H).

        Everything runs on the packed real positions (``batch["seq_sparse"]`` has one row
        per real token, ``make_batch``): the padded (B,T) layout is only built for the
        token outputs when entities are tagged. Without entities the first value is an
        empty (B,T,0) tensor (the token outputs are not computed).
        """
        mask = batch["mask"]
        b, t = mask.shape
        lengths = batch["lengths"]
        n_tokens = int(lengths.sum())
        parts = []
        if self.seq_sparse is not None:
            dense = self.seq_sparse(batch["seq_sparse"])  # float32
            parts.append(self.input_drop(dense) if self.dense_input_dropout else dense)
        if self.dims["seq_dense"]:
            dense = batch["seq_dense"][mask]
            parts.append(self.input_drop(dense) if self.dense_input_dropout else dense)
        seq = torch.cat(parts, -1) if parts else torch.zeros(n_tokens, 1)
        sparts = []
        if self.sent_sparse is not None:
            dense = self.sent_sparse(batch["sent_sparse"])
            sparts.append(self.input_drop(dense) if self.dense_input_dropout else dense)
        if self.dims["sent_dense"]:
            dense = batch["sent_dense"]
            sparts.append(self.input_drop(dense) if self.dense_input_dropout else dense)
        sent = torch.cat(sparts, -1) if sparts else torch.zeros(b, 1)
        n_real = n_tokens + b
        pad = padded_rows(n_real) - n_real if self.training else 0
        if pad:
            seq = torch.cat([seq, seq.new_zeros(pad, seq.shape[1])])
        seq, sent = self.seq_unify(seq), self.sent_unify(sent)
        # the CLS goes right after each message's last token (position n_i): in the packed
        # order (row after row) token rows come from ``seq`` and each row's CLS from ``sent``;
        # a training batch's padding rows (``padded_rows``) follow the last row
        full_mask = torch.arange(t + 1).unsqueeze(0) <= lengths.unsqueeze(1)
        where = full_mask.nonzero(as_tuple=True)
        cls = torch.cumsum(lengths + 1, 0) - 1  # each row's CLS in the packed order
        source = torch.empty(n_real + pad, dtype=torch.long)
        is_cls = where[1] == lengths[where[0]]
        real = source[:n_real]
        real[~is_cls] = torch.arange(n_tokens)
        real[cls] = torch.arange(n_tokens + pad, n_tokens + pad + b)
        source[n_real:] = torch.arange(n_tokens, n_tokens + pad)
        x = torch.cat([seq, sent])[source]
        positions = torch.cat([where[1], where[1].new_zeros(pad)]) if pad else where[1]
        if not len(self.layers):
            out = x.new_zeros(b, t + 1, x.shape[-1]).index_put(where, x[:n_real])
            return out[:, :t], sent
        groups = attention_groups(lengths + 1)
        xp = self.embed_in(x) * (self.size ** 0.5) + self.timing[positions]
        xp = self.drop(xp)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == last and not self.needs_tokens:
                return xp.new_zeros(b, t, 0), nn.functional.gelu(self.norm(layer(xp, groups, only=cls)))
            xp = layer(xp, groups)
        xp = nn.functional.gelu(self.norm(xp))
        out = xp.new_zeros(b, t + 1, xp.shape[-1]).index_put(where, xp[:n_real])
        return out[:, :t], xp[cls]

    def regularized_layers(self) -> list[nn.Module]:
        """Layers whose weights get Rasa's L2 ``regularization_constant`` (its dense layers)."""
        layers: list[Any] = [self.seq_sparse, self.sent_sparse, self.seq_unify, self.sent_unify,
                             getattr(self, "embed_in", None), self.text_embed, self.label_embed]
        for layer in self.layers:
            layers.extend(layer.dense_layers())
        return [m for m in layers if m is not None and isinstance(getattr(m, "weight", None), torch.Tensor)]

    def similarities(self, sentence: torch.Tensor) -> torch.Tensor:
        text = self.text_embed(sentence)
        labels = self.label_embed.weight
        if self.cfg["similarity_type"] == "cosine":
            text = nn.functional.normalize(text, dim=-1)
            labels = nn.functional.normalize(labels, dim=-1)
        return text @ labels.t()


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


def _per_text(value: Any) -> int:
    """Rasa's size options may be a number or ``{text: .., label: ..}``."""
    return int(value.get("text", next(iter(value.values()))) if isinstance(value, dict) else value)


def sinusoid(length: int, size: int) -> torch.Tensor:
    """Transformer timing signal (Vaswani et al.), as Rasa's encoder adds it."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rates = torch.pow(10000.0, -torch.arange(0, size, 2, dtype=torch.float32) / size)
    out = torch.zeros(length, size)
    out[:, 0::2] = torch.sin(pos * rates)
    out[:, 1::2] = torch.cos(pos * rates)[:, : size // 2]
    return out


# --------------------------------------------------------------------------- loss


def dot_product_loss(text: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                     num_negatives: int, cosine: bool = False, constrain: bool = False) -> torch.Tensor:
    """Rasa's ``SingleLabelDotProductLoss`` with ``loss_type: cross_entropy``.

    ``text`` (B,E) are the CLS embeddings, ``labels`` (K,E) every intent's embedding,
    ``target`` (B) the gold intent ids. For each example the positive similarity competes
    with ``num_negatives`` negatives of four kinds, each drawn uniformly with replacement
    (negatives that turn out to share the gold label are masked out, as Rasa does):
    text-vs-other-label, gold-label-vs-other-label, text-vs-texts-of-other-labels in the
    batch and gold-label-vs-those-texts. Only the first kind exists at inference; the
    other three keep the label and text embeddings apart from each other, which is what
    makes DIET generalise from few examples. ``constrain`` adds Rasa's
    ``constrain_similarities`` sigmoid term (its default config sets it).
    """
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
    parts = [sim_pos, sim_il, sim_ll]
    if b > 1:
        text_ids = torch.randint(0, b, (b, n))
        bad_texts = target[text_ids] == target.unsqueeze(1)
        neg_texts = text[text_ids]
        parts.append(torch.einsum("be,bne->bn", text, neg_texts).masked_fill(bad_texts, neg_inf))
        parts.append(torch.einsum("be,bne->bn", pos_label, neg_texts).masked_fill(bad_texts, neg_inf))
    logits = torch.cat(parts, 1)
    loss = nn.functional.cross_entropy(logits, torch.zeros(b, dtype=torch.long))
    if constrain:
        # Rasa's constrain_similarities: a sigmoid cross-entropy on the same similarities
        # (the positive towards 1, every negative towards 0), averaged over them
        labels_01 = torch.zeros_like(logits)
        labels_01[:, 0] = 1.0
        sigmoid = nn.functional.binary_cross_entropy_with_logits(logits, labels_01, reduction="none")
        loss = loss + sigmoid.mean(1).mean()
    return loss


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


# --------------------------------------------------------------------------- component


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
        "hidden_layers_sizes", "share_hidden_layers", "use_key_relative_attention",
        "use_value_relative_attention", "max_relative_position", "unidirectional_encoder",
        "loss_type", "maximum_positive_similarity",
        "maximum_negative_similarity", "use_maximum_negative_similarity", "scale_loss",
        "negative_margin_scale", "connection_density", "drop_rate_attention",
        "use_masked_language_model", "tensorboard_log_directory", "tensorboard_log_level",
        "run_eagerly",
    })

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
        if cfg["similarity_type"] == "auto":
            cfg["similarity_type"] = "inner"
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
        wanted = self.config.get("featurizers") or []
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
                            text, model.label_embed.weight, target[has], num_neg, cosine,
                            constrain=bool(cfg["constrain_similarities"]))
                t = batch["mask"].shape[1]
                for key in self.tag_sets:
                    gold = torch.zeros(len(idx), t, dtype=torch.long)
                    for row, i in enumerate(idx):
                        seq = tags[key][i]
                        if seq:
                            gold[row, : len(seq)] = torch.tensor(seq)
                    emissions = model.taggers[key](tokens)
                    if batch["mask"].any():
                        loss = loss + model.crfs[key].nll(emissions, gold, batch["mask"])
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
