"""Rasa DIET options a project may set: featurizer aliases select features, attention dropout
and the unidirectional encoder work as in Rasa, and options kefu does not implement are
reported with file:line instead of being dropped silently."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.nlu.diet import DIETClassifier, DIETModel
from bot.nlu.pipeline import NLUPipeline
from bot.shared.config import load_config
from bot.shared.training_data.nlu import Message, TrainingData

GREET = ["hi there", "hello", "hey", "good morning", "hello friend", "hi"]
BYE = ["bye", "see you later", "goodbye", "have a nice day", "bye bye", "see you"]


def _data() -> TrainingData:
    return TrainingData([Message(t, {"intent": "greet"}) for t in GREET]
                        + [Message(t, {"intent": "goodbye"}) for t in BYE])


def _config(tmp_path: Path, diet_lines: str, featurizers: str | None = None) -> Path:
    featurizers = featurizers if featurizers is not None else (
        "  - name: CountVectorsFeaturizer\n"
        "    alias: cvf-word\n"
        "  - name: CountVectorsFeaturizer\n"
        "    analyzer: char_wb\n"
        "    min_ngram: 1\n"
        "    max_ngram: 4\n"
        "    alias: cvf-char\n")
    path = tmp_path / "config.yml"
    path.write_text(
        "recipe: default.v1\nlanguage: en\npipeline:\n  - name: WhitespaceTokenizer\n" + featurizers
        + "  - name: DIETClassifier\n" + diet_lines, encoding="utf-8")
    return path


def test_featurizer_aliases_select_the_features_diet_learns_from(tmp_path: Path) -> None:
    """Rasa's documented pattern: featurizers get an ``alias`` and DIET's ``featurizers`` lists
    the ones it uses. Before, kefu labelled features with the component name only, so DIET got
    no features at all and answered every message with no intent."""
    config = load_config(_config(tmp_path, "    epochs: 60\n    featurizers: [cvf-word]\n"))
    pipeline = NLUPipeline.from_config(config).train(_data())
    diet = next(c for c in pipeline.components if isinstance(c, DIETClassifier))
    word = next(c for c in pipeline.components if c.feature_origin == "cvf-word")
    assert diet.dims["seq_sparse"] == len(word.vocabulary) > 0  # the word counts alone, no char n-grams
    for text in GREET:
        assert pipeline.parse(text)["intent"]["name"] == "greet", text
    for text in BYE:
        assert pipeline.parse(text)["intent"]["name"] == "goodbye", text


def test_a_featurizer_name_no_featurizer_has_is_reported_with_file_and_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _config(tmp_path, "    epochs: 1\n    featurizers: [cvf-word, cvf-typo]\n")
    with caplog.at_level(logging.WARNING, logger="bot.nlu.pipeline"):
        NLUPipeline.from_config(load_config(path))
    text = caplog.text
    assert f"{path}:12: DIETClassifier lists featurizer(s) 'cvf-typo'" in text
    assert "they are: cvf-word, cvf-char" in text and "no features to learn from" not in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.nlu.pipeline"):
        NLUPipeline.from_config(load_config(_config(tmp_path, "    epochs: 1\n    featurizers: [CountVectorsFeaturizer]\n")))
    assert "It has no features to learn from." in caplog.text  # aliased: the class name selects nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.nlu.pipeline"):  # one name, not in a list
        NLUPipeline.from_config(load_config(_config(tmp_path, "    epochs: 1\n    featurizers: cvf-typo\n")))
    assert "featurizer(s) 'cvf-typo'" in caplog.text and "It has no features to learn from." in caplog.text


def test_options_kefu_does_not_implement_are_reported_when_set(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """(The line is the component's: the config's keys carry no lines of their own here.)"""
    path = _config(tmp_path, "    epochs: 1\n    use_masked_language_model: true\n    tensorboard_log_directory: ./tb\n"
                             "    loss_type: cross_entropy\n")
    with caplog.at_level(logging.WARNING, logger="bot.nlu.registry"):
        NLUPipeline.from_config(load_config(path))
    assert (f"{path}:12: DIETClassifier option 'use_masked_language_model: true' has no effect in kefu; "
            "it trains as with the default (false).") in caplog.text
    assert f"{path}:12: DIETClassifier option 'tensorboard_log_directory: \"./tb\"'" in caplog.text
    assert "loss_type" not in caplog.text  # set to its default: nothing to report
    caplog.clear()
    formbot = "  - name: CountVectorsFeaturizer\n    token_pattern: (?u)\\b\\w+\\b\n"  # Rasa's formbot example
    with caplog.at_level(logging.WARNING, logger="bot.nlu.registry"):
        NLUPipeline.from_config(load_config(_config(tmp_path, "    epochs: 1\n", featurizers=formbot)))
    assert ("CountVectorsFeaturizer option 'token_pattern: \"(?u)\\\\b\\\\w+\\\\b\"' has no effect in kefu; "
            "it counts the tokens of the pipeline's tokenizer.") in caplog.text
    assert "connection_density" not in DIETClassifier.ignored_options  # implemented (RandomlyConnectedDense)


def _model(**cfg: Any) -> DIETModel:
    config = dict(DIETClassifier.defaults)
    config.update(similarity_type="inner", drop_rate=0.0, transformer_size=16, number_of_attention_heads=2,
                  connection_density=1.0, embedding_dimension=4, **cfg)
    torch.manual_seed(0)
    return DIETModel({"seq_sparse": 0, "sent_sparse": 0, "seq_dense": 6, "sent_dense": 5}, 3,
                     {"entity": ["O", "U-x"]}, config).eval()


def _batch(later: float = 0.0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(3)
    lengths = [5, 3]
    mask = torch.tensor([[i < n for i in range(5)] for n in lengths])
    seq = torch.randn(2, 5, 6, generator=gen) * mask.unsqueeze(-1)
    seq[0, 4] += later  # the first message's last token
    return {"mask": mask, "lengths": torch.tensor(lengths), "seq_dense": seq,
            "sent_dense": torch.randn(2, 5, generator=gen)}


def test_unidirectional_encoder_keeps_later_tokens_out_of_earlier_positions() -> None:
    for unidirectional in (True, False):
        model = _model(unidirectional_encoder=unidirectional)
        with torch.no_grad():
            tokens, sentence = model(_batch())
            tokens2, sentence2 = model(_batch(later=3.0))
        earlier_same = torch.allclose(tokens[0, :4], tokens2[0, :4], atol=1e-6)
        assert earlier_same is unidirectional
        assert not torch.allclose(sentence[0], sentence2[0])  # the CLS, after every token, sees it
        assert torch.allclose(tokens[1], tokens2[1], atol=1e-6)  # another message: never


def test_attention_dropout_applies_while_training_only() -> None:
    batch = _batch()
    for rate in (0.5, 0.0):
        model = _model(drop_rate_attention=rate).train()
        torch.manual_seed(1)
        first = model(batch)[1]
        second = model(batch)[1]
        assert torch.equal(first, second) is (rate == 0.0)
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(batch)[1], model(batch)[1])


def test_hidden_layers_sizes_build_rasas_text_and_label_feed_forward_layers() -> None:
    model = _model(hidden_layers_sizes={"text": [12, 10], "label": [6]}).train()
    assert [m.out_features for m in model.text_ffnn.dense] == [12, 10]
    assert model.embed_in.in_features == 10  # the transformer reads the Ffnn's output
    assert model.label_input is not None and model.label_input.weight.shape == (3, 20)  # Rasa's label dense_dimension
    assert model.label_embeddings().shape == (3, 4)
    regularized = {id(m) for m in model.regularized_layers()}
    assert all(id(m) in regularized for m in [*model.text_ffnn.dense, *model.label_ffnn.dense, model.label_input])
    _, sentence = model(_batch())
    (model.similarities(sentence).sum()).backward()
    for param in (model.text_ffnn.dense[0].weight, model.label_ffnn.dense[0].weight, model.label_input.weight):
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)
    plain = _model()  # no hidden layers: the model as before (one embedding row per intent)
    assert not plain.text_ffnn.dense and plain.label_input is None
    assert isinstance(plain.label_embed, torch.nn.Embedding)


def test_hidden_layers_sizes_train_save_and_load(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "    epochs: 80\n    hidden_layers_sizes:\n      text: [64]\n"
                                           "      label: [16]\n", featurizers=(
        "  - name: CountVectorsFeaturizer\n  - name: CountVectorsFeaturizer\n    analyzer: char_wb\n"
        "    min_ngram: 1\n    max_ngram: 4\n")))
    pipeline = NLUPipeline.from_config(config).train(_data())
    for text, intent in [*((t, "greet") for t in GREET), *((t, "goodbye") for t in BYE)]:
        assert pipeline.parse(text)["intent"]["name"] == intent, text
    pipeline.persist(tmp_path / "nlu")
    loaded = NLUPipeline.load(tmp_path / "nlu")
    for text in ("hello", "see you"):
        assert loaded.parse(text)["intent_ranking"] == pipeline.parse(text)["intent_ranking"]


@pytest.mark.parametrize("value", [{"text": [0]}, {"text": "256"}, {"txt": [8]}, [256]])
def test_a_wrong_hidden_layers_sizes_is_a_config_error_naming_it(tmp_path: Path, value: Any) -> None:
    from bot.nlu.base import PipelineContext
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="hidden_layers_sizes"):
        DIETClassifier({"hidden_layers_sizes": value}, PipelineContext(config_file="config.yml"))


def _sims() -> tuple[torch.Tensor, ...]:
    neg = torch.finfo(torch.float32).min / 2
    sim_pos = torch.tensor([[3.0], [0.5]])
    sim_il = torch.tensor([[1.0, neg], [0.2, -0.3]])
    sim_ll = torch.tensor([[0.4, neg], [0.9, 0.1]])
    sim_ii = torch.tensor([[-0.5, 0.3], [neg, 0.7]])
    sim_li = torch.tensor([[0.6, -0.2], [neg, 0.0]])
    return sim_pos, sim_il, sim_ll, sim_ii, sim_li


def test_cross_entropy_with_constrain_similarities_is_rasas_softmax_and_sigmoid_terms() -> None:
    """Rasa's _loss_cross_entropy: the softmax takes the positive, text-label and label-text
    similarities, plus label-label and text-text only without constrain_similarities; the
    constrained loss adds the sigmoid term over all five kinds."""
    from bot.nlu.diet.losses import LossOptions, combine_similarities

    sims = _sims()
    sim_pos, sim_il, sim_ll, sim_ii, sim_li = sims
    nll = lambda logits: -torch.log_softmax(logits, 1)[:, 0]  # noqa: E731
    plain = nll(torch.cat([sim_pos, sim_il, sim_li, sim_ii, sim_ll], 1)).mean()
    assert torch.allclose(combine_similarities(*sims, LossOptions()), plain)
    every = torch.cat([sim_pos, sim_il, sim_ll, sim_ii, sim_li], 1)
    target = torch.zeros_like(every)
    target[:, 0] = 1
    sigmoid = torch.nn.functional.binary_cross_entropy_with_logits(every, target, reduction="none").mean(1)
    constrained = (nll(torch.cat([sim_pos, sim_il, sim_li], 1)) + sigmoid).mean()
    assert torch.allclose(combine_similarities(*sims, LossOptions(constrain=True)), constrained)
    # scale_loss: each example weighted ((1 - p) / 0.5)^4 once one of them has p > 0.5
    per_example = nll(torch.cat([sim_pos, sim_il, sim_li, sim_ii, sim_ll], 1))
    p = torch.exp(-per_example)
    assert bool(p.max() > 0.5)
    assert torch.allclose(combine_similarities(*sims, LossOptions(scale_loss=True)),
                          (per_example * ((1 - p) / 0.5) ** 4).mean())
    unsure = (sim_pos - 2.5, *sims[1:])  # no example above 0.5 yet: no scaling
    assert torch.allclose(combine_similarities(*unsure, LossOptions(scale_loss=True)),
                          combine_similarities(*unsure, LossOptions()))


def test_margin_loss_is_rasas() -> None:
    from bot.nlu.diet.losses import LossOptions, combine_similarities

    sims = _sims()
    sim_pos, sim_il, sim_ll, sim_ii, sim_li = sims
    relu = torch.relu
    mu_pos, mu_neg, lam = 0.8, -0.4, 0.8
    expected = (relu(mu_pos - sim_pos[:, 0]) + relu(mu_neg + sim_il.max(1).values)
                + lam * (relu(mu_neg + sim_ll.max(1).values) + relu(mu_neg + sim_ii.max(1).values)
                         + relu(mu_neg + sim_li.max(1).values))).mean()
    assert torch.allclose(combine_similarities(*sims, LossOptions(loss_type="margin")), expected)
    every_neg = (relu(mu_pos - sim_pos[:, 0]) + relu(mu_neg + sim_il).sum(1)
                 + lam * (relu(mu_neg + sim_ll.max(1).values) + relu(mu_neg + sim_ii.max(1).values)
                          + relu(mu_neg + sim_li.max(1).values))).mean()
    got = combine_similarities(*sims, LossOptions(loss_type="margin", use_max_sim_neg=False))
    assert torch.allclose(got, every_neg)


def test_margin_loss_trains_with_cosine_similarity(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "    epochs: 80\n    loss_type: margin\n", featurizers=(
        "  - name: CountVectorsFeaturizer\n  - name: CountVectorsFeaturizer\n    analyzer: char_wb\n"
        "    min_ngram: 1\n    max_ngram: 4\n")))
    pipeline = NLUPipeline.from_config(config).train(_data())
    diet = next(c for c in pipeline.components if isinstance(c, DIETClassifier))
    assert diet.config["similarity_type"] == "cosine"  # Rasa's `auto` for the margin loss
    for text, intent in [*((t, "greet") for t in GREET), *((t, "goodbye") for t in BYE)]:
        assert pipeline.parse(text)["intent"]["name"] == intent, text


def test_an_unknown_loss_type_is_a_config_error() -> None:
    from bot.nlu.base import PipelineContext
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="loss_type 'softmax'"):
        DIETClassifier({"loss_type": "softmax"}, PipelineContext(config_file="config.yml"))


def test_scale_loss_weights_the_entity_crf_loss_too() -> None:
    """Rasa's CRF layer scales each sequence's negative log-likelihood like the intent loss."""
    from bot.nlu.diet.losses import scaled_loss
    from bot.nlu.diet.tagging import CRF

    torch.manual_seed(0)
    crf = CRF(["O", "U-x"], use_bilou=True)
    tags = torch.tensor([[0, 1, 0], [1, 0, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    emissions = torch.randn(2, 3, 2) + 4.0 * torch.nn.functional.one_hot(tags, 2)  # the gold path likely
    per_row = torch.stack([crf.nll(emissions[i : i + 1], tags[i : i + 1], mask[i : i + 1]) for i in range(2)])
    assert bool(torch.exp(-per_row).max() > 0.5)
    assert torch.allclose(crf.nll(emissions, tags, mask), per_row.mean())
    assert torch.allclose(crf.nll(emissions, tags, mask, scale_loss=True), scaled_loss(per_row).mean())
    assert float(crf.nll(emissions, tags, mask, scale_loss=True)) < float(crf.nll(emissions, tags, mask))


def test_one_featurizer_name_not_in_a_list_selects_that_featurizer_alone(tmp_path: Path) -> None:
    """``featurizers: cvf-char`` (a string): the name, not every alias it contains ('cvf')."""
    featurizers = ("  - name: CountVectorsFeaturizer\n    alias: cvf\n"
                   "  - name: CountVectorsFeaturizer\n    analyzer: char_wb\n    min_ngram: 1\n    max_ngram: 4\n"
                   "    alias: cvf-char\n")
    config = load_config(_config(tmp_path, "    epochs: 1\n    featurizers: cvf-char\n", featurizers=featurizers))
    pipeline = NLUPipeline.from_config(config).train(_data())
    diet = next(c for c in pipeline.components if isinstance(c, DIETClassifier))
    char = next(c for c in pipeline.components if c.feature_origin == "cvf-char")
    assert diet.dims["seq_sparse"] == len(char.vocabulary)
