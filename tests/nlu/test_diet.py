"""DIET as Rasa builds it (bot/nlu/diet/): CLS position, packed encoder, loss, layers."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from bot.nlu import NLUPipeline
from bot.nlu.diet import DIETClassifier, DIETModel
from bot.nlu.diet.batches import balanced_order, length_bucketed_batches
from bot.nlu.diet.losses import LossOptions, dot_product_loss
from bot.nlu.diet.model import ByteDropout, MaskedLinear
from bot.shared.training_data.nlu import load_nlu_yaml

RASA_DEFAULT = [
    {"name": "WhitespaceTokenizer"}, {"name": "RegexFeaturizer"}, {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100}, {"name": "EntitySynonymMapper"},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]

# a small English bot in the style of `rasa init` (hand-written for this test)
SMALL_BOT = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hey
    - hello
    - hi
    - hello there
    - good morning
    - good evening
    - hey there
- intent: goodbye
  examples: |
    - bye
    - goodbye
    - see you later
    - good night
    - have a nice day
- intent: affirm
  examples: |
    - yes
    - y
    - indeed
    - of course
    - that sounds good
    - correct
- intent: deny
  examples: |
    - no
    - n
    - never
    - I don't think so
    - not really
- intent: mood_great
  examples: |
    - perfect
    - great
    - amazing
    - I am feeling very good
    - I am great
    - so good
- intent: mood_unhappy
  examples: |
    - my day was horrible
    - I am sad
    - I don't feel very well
    - sad
    - very sad
    - not good
"""


def _tiny_model(tag_sets: dict[str, list[str]] | None = None, density: float = 1.0, layers: int = 2) -> DIETModel:
    cfg = dict(DIETClassifier.defaults)
    cfg.update(similarity_type="inner", drop_rate=0.0, transformer_size=16, number_of_attention_heads=2,
               connection_density=density, embedding_dimension=4, number_of_transformer_layers=layers)
    torch.manual_seed(0)
    dims = {"seq_sparse": 0, "sent_sparse": 0, "seq_dense": 6, "sent_dense": 5}
    return DIETModel(dims, 3, tag_sets or {}, cfg).eval()


def _batch(lengths: list[int], seed: int = 1) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    t = max(lengths)
    mask = torch.tensor([[i < n for i in range(t)] for n in lengths])
    return {"mask": mask, "lengths": torch.tensor(lengths),
            "seq_dense": torch.randn(len(lengths), t, 6, generator=gen) * mask.unsqueeze(-1),
            "sent_dense": torch.randn(len(lengths), 5, generator=gen)}


def _alone(batch: dict[str, Any], row: int) -> dict[str, Any]:
    n = int(batch["lengths"][row])
    return {"mask": batch["mask"][row : row + 1, :n], "lengths": batch["lengths"][row : row + 1],
            "seq_dense": batch["seq_dense"][row : row + 1, :n], "sent_dense": batch["sent_dense"][row : row + 1]}


def test_diet_sentence_output_does_not_depend_on_padding() -> None:
    """The CLS sits right after each message's tokens: a short message parsed alone gets
    the same sentence vector as in a padded training batch (it did not before)."""
    model = _tiny_model()
    batch = _batch([5, 1, 3])
    with torch.no_grad():
        _, together = model(batch)
        for row in range(3):
            _, alone = model(_alone(batch, row))
            assert torch.allclose(alone[0], together[row], atol=1e-5)


def test_diet_cls_only_last_layer_equals_the_full_layer() -> None:
    """Without entities the last layer computes the CLS alone; the result is the same."""
    model = _tiny_model()
    batch = _batch([4, 2, 1])
    with torch.no_grad():
        _, short_cut = model(batch)
        model.needs_tokens = True
        tokens, full = model(batch)
    assert torch.allclose(short_cut, full, atol=1e-5)
    assert tokens.shape == (3, 4, 16)
    assert torch.all(tokens[1, 3:] == 0)  # row 1: two tokens, its CLS at 2, padding after


def test_masked_linear_keeps_about_density_and_connects_every_unit() -> None:
    torch.manual_seed(0)
    layer = MaskedLinear(64, 48, density=0.2)
    keep = layer.keep
    assert 0.18 < float(keep.mean()) < 0.25
    assert bool((keep.sum(0) > 0).all()) and bool((keep.sum(1) > 0).all())
    assert torch.all(layer.weight[keep == 0] == 0)
    x = torch.randn(3, 64)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and torch.all(layer.weight.grad[keep == 0] == 0)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, weight_decay=0.01)
    opt.step()  # cut weights stay cut
    assert torch.all(layer.weight[keep == 0] == 0) and bool((layer.weight[keep == 1] != 0).any())
    assert MaskedLinear(4, 4, density=1.0).keep is None


def test_byte_dropout_drops_the_rate_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = ByteDropout(0.2)
    x = torch.ones(200_000)
    out = drop(x)
    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.2) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.01
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(ByteDropout(0.0).train()(x), x)


def _reference_byte_dropout(drop: ByteDropout, x: torch.Tensor) -> torch.Tensor:
    """The previous formula (boolean mask, then the scale), drawing the same random bytes."""
    n = x.numel()
    bytes_ = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = bytes_.view(torch.uint8)[:n].view(x.shape) >= drop.threshold
    return x * keep * drop.scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_byte_dropout_one_multiply_matches_the_reference_formula(dtype: torch.dtype) -> None:
    drop = ByteDropout(0.2).train()
    base = torch.randn(300, 64)
    grad_out = torch.randn(300, 64)
    results = []
    for fn in (drop, lambda t: _reference_byte_dropout(drop, t)):
        torch.manual_seed(7)  # the same bytes, so the same kept positions
        x = base.to(dtype).requires_grad_(True)
        out = fn(x)
        out.backward(grad_out.to(dtype))
        results.append((out.float(), x.grad.float()))
    (out, grad), (ref_out, ref_grad) = results
    assert torch.equal(out == 0, ref_out == 0)
    assert float((out == 0).float().mean()) > 0.1  # something was dropped
    # float32: the same products; bfloat16: the scale 256/205 rounds to 1.25 in the mask, so a
    # value may land one bfloat16 step (2**-7 relative) away, and the mean moves by ~0.1 %
    tol = 1e-6 if dtype == torch.float32 else 2.0**-7
    assert torch.allclose(out, ref_out, rtol=tol, atol=0)
    assert torch.allclose(grad, ref_grad, rtol=tol, atol=0)
    ratio = float(out.detach().abs().sum() / ref_out.detach().abs().sum())
    assert abs(ratio - 1.0) < (1e-6 if dtype == torch.float32 else 3e-3)


def test_dot_product_loss_masks_negatives_of_the_gold_label() -> None:
    torch.manual_seed(0)
    text = torch.randn(6, 4)
    # one label only: every sampled negative is the gold label, masked out: nothing to lose
    assert float(dot_product_loss(text, torch.randn(1, 4), torch.zeros(6, dtype=torch.long), 5)) == pytest.approx(0.0, abs=1e-6)
    labels = torch.eye(3, 4) * 5
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    aligned = dot_product_loss(labels[target], labels, target, 10)
    opposed = dot_product_loss(-labels[target], labels, target, 10)
    assert float(aligned) < 0.01 < float(opposed)
    # constrain_similarities adds the sigmoid term (zero only when positives are far above 0
    # and negatives far below; ~log 2 per similarity near 0) and, as in Rasa, leaves the
    # label-label and text-text negatives out of the softmax (tests/nlu/test_diet_options.py
    # checks both terms against Rasa's formulas)
    torch.manual_seed(1)
    small = dot_product_loss(labels[target] * 0.01, labels, target, 10, options=LossOptions(constrain=True))
    torch.manual_seed(1)
    unconstrained = dot_product_loss(labels[target] * 0.01, labels, target, 10)
    assert float(small) > 0.6 and abs(float(small) - float(unconstrained)) > 0.05


def test_length_bucketed_batches_cover_every_example_once() -> None:
    lengths = [1, 9, 3, 7, 5, 2, 8, 4, 6, 10]
    batches = length_bucketed_batches(list(range(10)), lengths, size=3, window=2)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert all(len(b) <= 3 for b in batches)
    for b in batches:  # inside a window, batches hold neighbours in length
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 5


def test_a_small_epoch_is_cut_as_it_comes() -> None:
    """Sorted whole, a small epoch would give the same batches every epoch (the shortest
    messages always together); it is cut in its shuffled order, as Rasa does, and each batch
    is ordered by length (its members unchanged)."""
    lengths = [5, 1, 4, 2, 3, 6]
    order = [3, 0, 5, 1, 4, 2]
    assert length_bucketed_batches(order, lengths, size=4, window=8) == [[1, 3, 0, 5], [4, 2]]
    many = list(range(40))
    batches = length_bucketed_batches(many, [i % 7 for i in many], size=5, window=8)  # 8 batches: 2 windows of 4
    assert sorted(i for b in batches for i in b) == many
    assert all(set(b) <= set(range(20)) or set(b) <= set(range(20, 40)) for b in batches)


def test_balanced_order_repeats_rare_labels_as_rasa_does() -> None:
    """Rasa's balanced strategy: each round takes int(count / n * size) + 1 examples of
    every label, a label already gone through once only every other round, until every
    label has been gone through once. 100 examples of label 0 and 2 of label 1, batch 16:
    label 0 takes 16 a round and is gone through in round 7; label 1 takes 1 a round, is
    gone through after round 2 and then comes back in rounds 4 and 6."""
    import random

    random.seed(3)
    labels = [0] * 100 + [1] * 2
    order = list(range(102))
    random.shuffle(order)
    out = balanced_order(order, labels, size=16)
    common = [i for i in out if labels[i] == 0]
    rare = [i for i in out if labels[i] == 1]
    assert common == [i for i in order if labels[i] == 0]  # the big label once, in the shuffled order
    assert len(rare) == 4 and set(rare) == {100, 101}  # the rare one twice as often as the data has it
    assert len(out) == 104


def test_balanced_order_is_the_data_once_when_labels_are_balanced() -> None:
    labels = [i % 4 for i in range(40)]
    out = balanced_order(list(range(40)), labels, size=8)
    assert sorted(out) == list(range(40))


def test_diet_refuses_an_unknown_batch_strategy() -> None:
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="batch_strategy 'stratified'"):
        NLUPipeline.from_config({"language": "en", "pipeline": [
            {"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"},
            {"name": "DIETClassifier", "batch_strategy": "stratified"}]})


def test_diet_evaluates_held_out_examples_and_keeps_the_best_checkpoint(caplog: pytest.LogCaptureFixture) -> None:
    data = load_nlu_yaml(SMALL_BOT)
    pipeline = [*RASA_DEFAULT[:5], {"name": "DIETClassifier", "epochs": 6, "evaluate_on_number_of_examples": 8,
                                     "evaluate_every_number_of_epochs": 2, "checkpoint_model": True,
                                     "transformer_size": 32, "random_seed": 1}]
    nlu = NLUPipeline.from_config({"language": "en", "pipeline": pipeline})
    with caplog.at_level("INFO", logger="bot.nlu.diet"):
        nlu.train(data)
    evaluated = [r.getMessage() for r in caplog.records if "held-out examples" in r.getMessage()]
    assert len(evaluated) == 3 and all("on 8 held-out" in m for m in evaluated)
    assert any("keeps the checkpoint" in r.getMessage() for r in caplog.records)


def test_rasa_default_pipeline_reads_its_own_training_examples() -> None:
    """Issue #16: with Rasa's default pipeline a small bot answered "hi" with affirm and
    "hey" with nlu_fallback. Every training example must come back with its intent."""
    data = load_nlu_yaml(SMALL_BOT)
    nlu = NLUPipeline.from_config({"language": "en", "pipeline": RASA_DEFAULT})
    nlu.train(data)
    wrong = [(m.text, m.intent, nlu.parse(m.text)["intent"]["name"]) for m in data.training_examples
             if nlu.parse(m.text)["intent"]["name"] != m.intent]
    assert wrong == []
    for text in ("hi", "hey"):
        parsed = nlu.parse(text)["intent"]
        assert parsed["name"] == "greet" and parsed["confidence"] > 0.5


def test_attention_groups_split_sorted_rows_by_length() -> None:
    from bot.nlu.diet.model import attention_groups

    groups = attention_groups(torch.tensor([2, 3, 4, 5, 9, 30]))
    # a group ends where its longest row would be more than twice its shortest
    assert [(g.row_start, tuple(g.valid.shape)) for g in groups] == [(0, (3, 4)), (3, (2, 9)), (5, (1, 30))]
    assert [(g.start, g.stop) for g in groups] == [(0, 9), (9, 23), (23, 53)]
    # rows in no useful order stay one group, padded to the longest
    mixed = attention_groups(torch.tensor([1, 40] * 6))
    assert len(mixed) == 1 and tuple(mixed[0].valid.shape) == (12, 40)


def test_grouped_attention_equals_one_padded_batch() -> None:
    """Per-group attention is the same computation as the whole batch padded at once,
    outputs and gradients alike (tokens too, as for entity tagging)."""
    import bot.nlu.diet.model as diet

    model = _tiny_model(tag_sets={"entity": ["O", "U-x"]})
    batch = _batch([1, 2, 2, 3, 7, 15])
    results = []
    for groups in (diet.MAX_ATTENTION_GROUPS, 0):
        model.zero_grad()
        old = diet.MAX_ATTENTION_GROUPS
        diet.MAX_ATTENTION_GROUPS = groups
        try:
            tokens, sentence = model(batch)
        finally:
            diet.MAX_ATTENTION_GROUPS = old
        (tokens.square().sum() + sentence.sum()).backward()
        results.append((tokens.detach(), sentence.detach(),
                        [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert len(diet.attention_groups(batch["lengths"] + 1)) > 1
    (t1, s1, g1), (t2, s2, g2) = results
    assert torch.allclose(t1, t2, atol=1e-5) and torch.allclose(s1, s2, atol=1e-5)
    assert len(g1) == len(g2) and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(g1, g2))


def test_padded_rows_round_up_by_at_most_a_sixteenth_and_repeat() -> None:
    from bot.nlu.diet.model import padded_rows

    values = {n: padded_rows(n) for n in range(1, 20_000)}
    assert all(n <= v <= max(n + 15, n * 17 // 16) for n, v in values.items())
    assert all(padded_rows(v) == v for v in values.values())  # a rounded count stays put
    # a training's batches of ~1 000 to 9 000 packed rows meet few distinct counts
    assert len({values[n] for n in range(1_000, 9_000)}) < 100


@pytest.mark.parametrize(("tokens_out", "layers"), [(False, 2), (True, 2), (True, 0)])
def test_training_batch_padding_rows_change_no_output_and_no_gradient(tokens_out: bool, layers: int) -> None:
    """A training batch's packed positions are padded to a rounded count (``padded_rows``,
    so oneDNN's kernel cache answers); the padding rows are never attended to or read, so
    outputs and gradients equal those of the same batch without them (eval mode pads
    nothing; the tiny model has no dropout)."""
    import bot.nlu.diet.model as diet

    model = _tiny_model(tag_sets={"entity": ["O", "U-x"]} if tokens_out else None, layers=layers)
    batch = _batch([1, 2, 2, 3, 7, 15, 4])  # 34 tokens + 7 CLS = 41 rows -> 48
    assert diet.padded_rows(41) > 41
    results = []
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        tokens, sentence = model(batch)
        (tokens.square().sum() + sentence.sum()).backward()
        results.append((tokens.detach(), sentence.detach(),
                        [(name, p.grad.clone()) for name, p in model.named_parameters() if p.grad is not None]))
    (t1, s1, g1), (t2, s2, g2) = results
    assert torch.allclose(t1, t2, atol=1e-5) and torch.allclose(s1, s2, atol=1e-5)
    assert [n for n, _ in g1] == [n for n, _ in g2] and len(g1) >= (10 if layers else 2)
    for (name, a), (_, b) in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-4), name


def test_sparse_input_layer_equals_the_dense_product_outputs_and_gradients() -> None:
    """The sparse-to-dense layers (an embedding bag over the batch's CSR features) give the
    outputs and gradients of the plain dense product ``features @ weight + bias``."""
    import numpy as np
    import scipy.sparse as sp

    from bot.nlu.diet.batches import make_batch

    rng = np.random.default_rng(0)
    dims = {"seq_sparse": 40, "sent_sparse": 30, "seq_dense": 0, "sent_dense": 0}
    items = []
    for n in (5, 1, 3, 7):
        items.append({"n": n, "seq_sparse": sp.random(n, 40, density=0.2, random_state=rng, format="csr").tocoo(),
                      "sent_sparse": sp.random(1, 30, density=0.3, random_state=rng, format="csr").tocoo(),
                      "seq_dense": None, "sent_dense": None})
    torch.manual_seed(0)
    model = DIETModel(dims, 3, {"entity": ["O", "U-x"]}, {**DIETClassifier.defaults, **{
        "transformer_size": 16, "number_of_attention_heads": 2, "dense_dimension": {"text": 8, "label": 8},
        "concat_dimension": {"text": 8, "label": 8}, "similarity_type": "inner"}}).eval()
    batch = make_batch(items, dims)
    assert batch["seq_sparse"].layout == torch.sparse_csr
    dense_x = batch["seq_sparse"].to_dense()
    assert dense_x.abs().sum() > 0 and dense_x.shape == (16, 40)
    upstream = torch.randn(16, 8)
    model.zero_grad()
    (model.seq_sparse(batch["seq_sparse"]) * upstream).sum().backward()
    weight = model.seq_sparse.weight.detach().clone().requires_grad_(True)
    bias = model.seq_sparse.bias.detach().clone().requires_grad_(True)
    want = dense_x @ weight + bias
    (want * upstream).sum().backward()
    assert torch.allclose(model.seq_sparse(batch["seq_sparse"]), want, atol=1e-6)
    assert torch.allclose(model.seq_sparse.weight.grad, weight.grad, atol=1e-6)
    assert torch.allclose(model.seq_sparse.bias.grad, bias.grad, atol=1e-6)
    assert weight.grad.abs().sum() > 0
    model.zero_grad()
    tokens, sentence = model(batch)
    (tokens.square().sum() + sentence.square().sum()).backward()
    results = [(tokens.detach(), sentence.detach())]
    # the packed sparse rows line up with their messages: each one parsed alone gets the
    # batch's sentence output and token outputs
    with torch.no_grad():
        for row, item in enumerate(items):
            tokens, sentence = model(make_batch([item], dims))
            assert torch.allclose(sentence[0], results[0][1][row], atol=1e-5)
            assert torch.allclose(tokens[0], results[0][0][row, : item["n"]], atol=1e-5)


def test_model_saved_with_the_old_sparse_weight_layout_loads_transposed(tmp_path: Any) -> None:
    """diet.json records the sparse-to-dense weight layout; a model saved before it (nn.Linear's
    (units, features) weights, no layout key) loads with its weights transposed and parses alike."""
    import json

    import numpy as np
    import scipy.sparse as sp

    from bot.nlu.base import PipelineContext
    from bot.nlu.diet.batches import make_batch

    dims = {"seq_sparse": 12, "sent_sparse": 12, "seq_dense": 0, "sent_dense": 0}  # square with 12 units
    config = {"transformer_size": 16, "number_of_attention_heads": 2, "dense_dimension": {"text": 12, "label": 12},
              "concat_dimension": {"text": 12, "label": 12}}
    clf = DIETClassifier(config, PipelineContext())
    clf.intents, clf.dims = ["a", "b"], dims
    torch.manual_seed(0)
    clf.model = DIETModel(dims, 2, {}, clf.config).eval()
    clf.persist(tmp_path)
    assert json.loads((tmp_path / "diet.json").read_text())["sparse_weight_layout"] == "features_units"
    rng = np.random.default_rng(0)
    item = {"n": 3, "seq_sparse": sp.random(3, 12, density=0.4, random_state=rng, format="coo"),
            "sent_sparse": sp.random(1, 12, density=0.5, random_state=rng, format="coo"),
            "seq_dense": None, "sent_dense": None}
    with torch.no_grad():
        want = clf.model(make_batch([item], dims))[1]
    # the same model as the old code saved it
    meta = json.loads((tmp_path / "diet.json").read_text())
    del meta["sparse_weight_layout"]
    (tmp_path / "diet.json").write_text(json.dumps(meta))
    state = clf.model.state_dict()
    for key in ("seq_sparse.weight", "sent_sparse.weight"):
        state[key] = state[key].t().contiguous()
    torch.save(state, tmp_path / "diet.pt")
    loaded = DIETClassifier.load(config, PipelineContext(), tmp_path)
    assert loaded.model is not None
    assert torch.equal(loaded.model.seq_sparse.weight, clf.model.seq_sparse.weight)
    with torch.no_grad():
        assert torch.allclose(loaded.model(make_batch([item], dims))[1], want, atol=1e-6)
