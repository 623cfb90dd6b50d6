"""Rasa 3.6's DIET graph in torch (rasa/nlu/classifiers/diet_classifier.py,
rasa/utils/tensorflow/rasa_layers.py, transformer.py, layers.py): layers, the encoder, the
model (its loss is ``losses``). What kefu adds is speed, not a different model: packed
positions, attention per group of similar-length rows, the CLS alone in the last layer when
no entities are tagged (docs/nlu.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bot.nlu.diet.tagging import CRF

MAX_SEQUENCE_LENGTH = 256  # tokens seen by the transformer; longer messages are truncated


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


class Ffnn(nn.Module):
    """Rasa's ``Ffnn`` (``hidden_layers_sizes``): randomly connected dense layers, each followed by
    GELU (``tf.nn.gelu``, exact, as in Rasa's transformer) and dropout. No sizes: the identity."""

    def __init__(self, n_in: int, sizes: list[int], rate: float, density: float) -> None:
        super().__init__()
        self.dense = nn.ModuleList()
        for units in sizes:
            self.dense.append(MaskedLinear(n_in, int(units), density))
            n_in = int(units)
        self.out_width = n_in
        self.drop = ByteDropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.dense:
            x = self.drop(nn.functional.gelu(layer(x)))
        return x


class EncoderLayer(nn.Module):
    """One pre-norm transformer layer as in Rasa's ``TransformerEncoderLayer``:
    attention (with ``drop_rate_attention``, optionally unidirectional), a 4x GELU
    feed-forward, dropout after each block.

    ``only`` (B,) limits the output to one position per row (the CLS): keys and values
    still come from every token, so that output equals the full layer's at that position
    while the other positions' queries and feed-forward are not computed at all.
    """

    def __init__(self, size: int, heads: int, dropout: float, density: float,
                 attention_dropout: float = 0.0, unidirectional: bool = False) -> None:
        super().__init__()
        self.heads = heads
        #: Rasa's ``drop_rate_attention`` (dropout on the attention weights while training)
        #: and ``unidirectional_encoder`` (a position attends to itself and the ones before)
        self.attention_dropout = float(attention_dropout)
        self.unidirectional = bool(unidirectional)
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
            mask = g.valid[:, None, None, :]
            if self.unidirectional and only is None:  # the CLS, last of its row, sees every token anyway
                mask = mask & torch.ones(t, t, dtype=torch.bool).tril()
            with torch.autocast("cpu", enabled=False):  # CPU attention is slower in bfloat16
                attended = nn.functional.scaled_dot_product_attention(
                    q.float(), padded(keys).float(), padded(values).float(), attn_mask=mask,
                    dropout_p=self.attention_dropout if self.training else 0.0)
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
        density = float(cfg["connection_density"])
        hidden = hidden_layer_sizes(cfg.get("hidden_layers_sizes"))
        # Rasa's RasaSequenceLayer: the combined features of every position (tokens and CLS)
        # go through the text Ffnn before the transformer
        self.text_ffnn = Ffnn(width, hidden["text"], float(cfg["drop_rate"]), density)
        width = self.text_ffnn.out_width
        size = _per_text(cfg["transformer_size"]) if layers > 0 else width
        self.size = size
        self.layers = nn.ModuleList()
        if layers > 0:
            self.embed_in = MaskedLinear(width, size, density)
            self.drop = ByteDropout(float(cfg["drop_rate"]))
            self.layers.extend(
                EncoderLayer(size, int(cfg["number_of_attention_heads"]), float(cfg["drop_rate"]), density,
                             float(cfg.get("drop_rate_attention") or 0.0), bool(cfg.get("unidirectional_encoder")))
                for _ in range(layers)
            )
            self.norm = nn.LayerNorm(size)
            self.register_buffer("timing", sinusoid(MAX_SEQUENCE_LENGTH + 1, size), persistent=False)
        #: token outputs are only needed for entity tagging: without it the last layer
        #: computes the CLS position alone
        self.needs_tokens = bool(tag_sets)
        emb = int(cfg["embedding_dimension"])
        self.text_embed = nn.Linear(size, emb)
        self.label_input: nn.Embedding | None = None
        self.label_ffnn: Ffnn | None = None
        if hidden["label"]:
            # Rasa's label side: the intent's one-hot features through the sparse-to-dense layer
            # (``dense_dimension`` label), the label Ffnn, then the embedding layer
            label_dense = _per_text(cfg["dense_dimension"], "label")
            self.label_input = nn.Embedding(max(num_intents, 1), label_dense)
            self.label_ffnn = Ffnn(label_dense, hidden["label"], float(cfg["drop_rate"]), density)
            self.label_embed: nn.Module = nn.Linear(self.label_ffnn.out_width, emb)
        else:
            # without hidden layers those two linear maps are one matrix: a row per intent
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
        x = self.text_ffnn(torch.cat([seq, sent])[source])
        positions = torch.cat([where[1], where[1].new_zeros(pad)]) if pad else where[1]
        if not len(self.layers):
            out = x.new_zeros(b, t + 1, x.shape[-1]).index_put(where, x[:n_real])
            return out[:, :t], x[cls]
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
                             getattr(self, "embed_in", None), self.text_embed, self.label_embed,
                             self.label_input, *self.text_ffnn.dense,
                             *(self.label_ffnn.dense if self.label_ffnn is not None else [])]
        for layer in self.layers:
            layers.extend(layer.dense_layers())
        return [m for m in layers if m is not None and isinstance(getattr(m, "weight", None), torch.Tensor)]

    def label_embeddings(self) -> torch.Tensor:
        """Every intent's embedding (K, embedding_dimension)."""
        if self.label_input is None or self.label_ffnn is None:
            return self.label_embed.weight
        return self.label_embed(self.label_ffnn(self.label_input.weight))

    def similarities(self, sentence: torch.Tensor) -> torch.Tensor:
        text = self.text_embed(sentence)
        labels = self.label_embeddings()
        if self.cfg["similarity_type"] == "cosine":
            text = nn.functional.normalize(text, dim=-1)
            labels = nn.functional.normalize(labels, dim=-1)
        return text @ labels.t()


def hidden_layer_sizes(value: Any) -> dict[str, list[int]]:
    """Rasa's ``hidden_layers_sizes`` (``{text: [...], label: [...]}``, either key may be left
    out) as lists of positive whole numbers; anything else is a ValueError saying what."""
    if value is None:
        value = {}
    if not isinstance(value, dict) or set(value) - {"text", "label"}:
        raise ValueError("hidden_layers_sizes must be a mapping with `text` and/or `label` lists, "
                         f"not {value!r}")
    out: dict[str, list[int]] = {}
    for key in ("text", "label"):
        sizes = value.get(key) or []
        if not isinstance(sizes, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                                   for n in sizes):
            raise ValueError(f"hidden_layers_sizes.{key} must be a list of positive whole numbers, not {sizes!r}")
        out[key] = list(sizes)
    return out


def _per_text(value: Any, part: str = "text") -> int:
    """Rasa's size options may be a number or ``{text: .., label: ..}``: the ``part`` of it."""
    return int(value.get(part, next(iter(value.values()))) if isinstance(value, dict) else value)


def sinusoid(length: int, size: int) -> torch.Tensor:
    """Transformer timing signal (Vaswani et al.), as Rasa's encoder adds it."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rates = torch.pow(10000.0, -torch.arange(0, size, 2, dtype=torch.float32) / size)
    out = torch.zeros(length, size)
    out[:, 0::2] = torch.sin(pos * rates)
    out[:, 1::2] = torch.cos(pos * rates)[:, : size // 2]
    return out
