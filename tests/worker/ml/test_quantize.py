"""Int8 scoring on a CPU: agrees with fp32 on real data, never touches the training weights,
follows weight changes, keeps the order of the texts, and works with the lower-layer cache."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

from contract.adapter_config import AdapterConfig
from contract.errors import ConfigError, NotSupported
from tests.conftest import skip_or_fail
from worker.ml.classifier import TextClassifier
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.progress import NullReporter
from worker.ml.quantize import Int8Linear
from worker.ml.scoring import ChunkedScorer, length_order
from worker.ml.training import TrainConfig, train_classifier

R8_TRAIN = 200
R8_DEV = 500
R8_MIN_AGREEMENT = 0.98
DEFAULT_MODEL_MIN_AGREEMENT = 0.99


def _train(tiny_bert, corpus, label_names, adapter: AdapterConfig) -> TextClassifier:
    texts, labels = corpus
    return train_classifier(
        texts[:30],
        labels[:30],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=adapter,
        config=TrainConfig(epochs=1, batch_size=8, lr_adapter=5e-3, device="cpu"),
    ).classifier


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))  # rows are L2-normalised


def test_int8_agrees_with_fp32_on_r8_dev_set() -> None:
    """Int8 against fp32 on 500 real R8 texts: argmax labels and embeddings.

    Measured here: 98.8 % equal argmax labels (the flips are items whose two best classes are
    within a few hundredths in fp32), embedding cosine 0.988 at worst, above 0.99 on average. That
    is short of the 99 % asked of a default, so int8 stays opt-in; the bounds below hold what was
    measured, with a little room.
    """
    from worker.simulate.benchmark_data import load_dataset

    try:
        train_x, train_y = load_dataset("r8", "train")
        test_x, _ = load_dataset("r8", "test")
    except Exception as exc:  # noqa: BLE001 - the data set is optional here
        skip_or_fail(f"R8 not available: {exc}")
    names = sorted(set(train_y))
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(train_x), R8_TRAIN, replace=False)
    try:
        result = train_classifier(
            [train_x[i] for i in chosen],
            [names.index(train_y[i]) for i in chosen],
            label_names=names,
            base_model="minilm",
            adapter=AdapterConfig(kind="lora"),
            config=TrainConfig(epochs=1, max_length=64, device="cpu"),
        )
    except Exception as exc:  # noqa: BLE001 - the offline MiniLM package is optional here
        skip_or_fail(f"the offline MiniLM base is not available: {exc}")
    classifier = result.classifier
    dev = list(test_x[:R8_DEV])
    classifier.scoring_precision = "fp32"
    fp32 = classifier.score(dev)
    classifier.scoring_precision = "int8"
    int8 = classifier.score(dev)
    agreement = float((int8.probs.argmax(axis=1) == fp32.probs.argmax(axis=1)).mean())
    cosines = _cosines(int8.embeddings, fp32.embeddings)
    assert agreement >= R8_MIN_AGREEMENT, f"int8 agrees with fp32 on {agreement:.1%} of labels"
    assert cosines.min() >= 0.98, f"embedding cosine down to {cosines.min():.4f}"
    assert cosines.mean() >= 0.99, f"embedding cosine {cosines.mean():.4f} on average"
    assert not any(isinstance(m, Int8Linear) for m in classifier.model.modules())


def test_int8_on_the_default_round_model_agrees_with_fp32_on_r8_dev_set() -> None:
    """The model a round trains by default (LoRA on the top two layers, head from a logistic
    regression on the frozen embeddings), scored through a float16 lower-layer cache as the
    worker holds it: int8 against fp32 on 500 real R8 texts."""
    from contract.adapter_config import with_default_layers
    from worker.ml.live_head import LiveHead
    from worker.ml.models import resolve_model_path
    from worker.ml.sentence_encoder import SentenceEncoder
    from worker.simulate.benchmark_data import load_dataset

    try:
        train_x, train_y = load_dataset("r8", "train")
        test_x, _ = load_dataset("r8", "test")
        base = resolve_model_path("minilm")
    except Exception as exc:  # noqa: BLE001 - the data set and base are optional here
        skip_or_fail(f"R8 or the offline MiniLM base not available: {exc}")
    names = sorted(set(train_y))
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(train_x), R8_TRAIN, replace=False)
    texts = [train_x[i] for i in chosen]
    labels = [names.index(train_y[i]) for i in chosen]
    embedded = SentenceEncoder(base, max_length=128).embed(texts)
    head = LiveHead().fit(embedded, np.asarray(labels), len(names)).linear_weights()
    adapter = AdapterConfig.from_dict({**with_default_layers({"kind": "lora"}, 6),
                                       "pooling": "mean"})
    classifier = train_classifier(
        texts, labels, label_names=names, base_model="minilm", adapter=adapter,
        config=TrainConfig(epochs=1, max_length=128, device="cpu", min_steps=30),
        head_init=head,
    ).classifier
    assert classifier.split_layer == 4
    classifier.use_layer_cache(LowerLayerCache(dtype=torch.float16))
    dev = list(test_x[:R8_DEV])
    classifier.scoring_precision = "fp32"
    fp32 = classifier.score(dev)
    classifier.scoring_precision = "int8"
    int8 = classifier.score(dev)
    assert len(set(fp32.probs.argmax(axis=1).tolist())) >= 4  # not one class for everything
    agreement = float((int8.probs.argmax(axis=1) == fp32.probs.argmax(axis=1)).mean())
    print(f"int8 vs fp32, default round model, R8: {agreement:.2%} equal argmax labels")
    assert agreement >= DEFAULT_MODEL_MIN_AGREEMENT, f"int8 agrees on {agreement:.1%} of labels"


@pytest.mark.parametrize(
    "adapter",
    [AdapterConfig(kind="lora", layers=[1]), AdapterConfig(kind="ia3", targets="attention+mlp")],
    ids=["lora", "ia3"],
)
def test_float_scoring_with_the_adapter_merged_equals_the_peft_forward(
    tiny_bert, corpus, label_names, adapter, monkeypatch
):
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, adapter)
    assert classifier._scoring_weights() is classifier._merged  # fp32 on a CPU: merged copies
    merged = classifier.score(texts, batch_size=16)
    mc = classifier.score(texts[:6], mc_dropout=2).mc_probs
    assert mc is not None and mc.shape == (2, 6, len(label_names))
    assert classifier._merged.builds == 1
    monkeypatch.setattr(classifier, "_scoring_weights", lambda: None)
    plain = classifier.score(texts, batch_size=16)
    np.testing.assert_allclose(merged.probs, plain.probs, atol=1e-5)
    np.testing.assert_allclose(merged.embeddings, plain.embeddings, atol=1e-5)
    names = [n for n, m in classifier.model.named_modules() if "lora_A" in n or "ia3_l" in n]
    assert names  # the training model keeps its adapter modules


@pytest.mark.parametrize(
    "adapter",
    [
        AdapterConfig(kind="lora", layers=[1]),
        AdapterConfig(kind="ia3", targets="attention+mlp"),
        AdapterConfig(kind="bottleneck", placement="parallel"),
        AdapterConfig(kind="full"),
    ],
    ids=["lora", "ia3", "bottleneck", "full"],
)
def test_int8_scores_follow_fp32_and_leave_the_model_alone(
    tiny_bert, corpus, label_names, adapter
):
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, adapter)
    classifier.scoring_precision = "fp32"
    before = {n: p.detach().clone() for n, p in classifier.model.state_dict().items()}
    fp32 = classifier.score(texts, batch_size=16)
    classifier.scoring_precision = "int8"
    int8 = classifier.score(texts, batch_size=16)
    after = classifier.model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    assert not any(isinstance(m, Int8Linear) for m in classifier.model.modules())
    np.testing.assert_allclose(int8.probs, fp32.probs, atol=0.05)
    assert _cosines(int8.embeddings, fp32.embeddings).min() >= 0.99
    classifier.scoring_precision = "fp32"
    np.testing.assert_allclose(classifier.score(texts, batch_size=16).probs, fp32.probs, atol=1e-6)


def test_int8_copies_are_rebuilt_when_weights_change(tiny_bert, corpus, label_names):
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora"))
    classifier.scoring_precision = "int8"
    first = classifier.score(texts)
    classifier.score(texts[:5])
    assert classifier._int8.builds == 1  # unchanged weights: built once
    lora = [p for n, p in classifier.model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for param in lora:
            param.mul_(4.0)
    classifier.scoring_precision = "fp32"
    fp32_changed = classifier.score(texts)
    classifier.scoring_precision = "int8"
    int8_changed = classifier.score(texts)
    assert classifier._int8.builds == 2
    assert not np.allclose(int8_changed.probs, first.probs, atol=1e-4)
    np.testing.assert_allclose(int8_changed.probs, fp32_changed.probs, atol=0.05)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bucketed_batches_keep_the_input_order(tiny_bert, corpus, label_names, precision):
    """Batches are sorted by length and the results put back: row i is always text i."""
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora"))
    classifier.scoring_precision = precision
    mixed = [t if i % 3 else f"{t} {t} {t}" for i, t in enumerate(texts)]  # varied lengths
    batched = classifier.score(mixed, batch_size=8)
    single = [classifier.score([t], batch_size=1) for t in mixed[:12]]
    reversed_ = classifier.score(mixed[::-1], batch_size=5)
    tolerance = 1e-5 if precision == "fp32" else 0.05
    for i, one in enumerate(single):
        np.testing.assert_allclose(batched.probs[i], one.probs[0], atol=tolerance)
        assert _cosines(batched.embeddings[i : i + 1], one.embeddings).min() >= 0.99
    np.testing.assert_allclose(reversed_.probs[::-1], batched.probs, atol=tolerance)
    assert (reversed_.probs[::-1].argmax(axis=1) == batched.probs.argmax(axis=1)).mean() >= 0.95


def test_layer_cache_matches_full_forward_in_fp32_and_keeps_int8_apart(
    tiny_bert, corpus, label_names
):
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora", layers=[1]))
    assert classifier.split_layer == 1
    classifier.scoring_precision = "fp32"
    full = classifier.score(texts, batch_size=7)
    cache = LowerLayerCache()
    classifier.use_layer_cache(cache)
    cold = classifier.score(texts, batch_size=7)
    warm = classifier.score(texts[::-1], batch_size=5)
    np.testing.assert_allclose(cold.probs, full.probs, atol=1e-5)
    np.testing.assert_allclose(warm.probs[::-1], full.probs, atol=1e-5)
    np.testing.assert_allclose(warm.embeddings[::-1], full.embeddings, atol=1e-5)
    unique = len(set(texts))
    assert len(cache) == unique
    classifier.scoring_precision = "int8"
    int8_cold = classifier.score(texts, batch_size=7)
    assert len(cache) == 2 * unique  # int8 lower layers are stored under their own keys
    int8_warm = classifier.score(texts, batch_size=7)
    np.testing.assert_allclose(int8_warm.probs, int8_cold.probs, atol=1e-5)
    np.testing.assert_allclose(int8_cold.probs, full.probs, atol=0.05)


def test_scoring_precision_setting_is_checked(tiny_bert, corpus, label_names):
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora"))
    assert classifier.scoring_precision == "auto"
    assert not classifier.scores_in_int8  # int8 is opt-in
    with pytest.raises(ConfigError, match="scoring_precision"):
        classifier.scoring_precision = "int4"
    prompt = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="prompt"))
    with pytest.raises(NotSupported, match="int8"):
        prompt.scoring_precision = "int8"


def test_chunked_scorer_orders_by_length_and_restores_the_order(tiny_bert, corpus, label_names):
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora"))
    classifier.scoring_precision = "fp32"
    mixed = [t if i % 4 else f"{t} {t} {t} {t}" for i, t in enumerate(texts)]
    assert length_order(mixed) != list(range(len(mixed)))
    reporter = RecordingReporter()
    chunked = ChunkedScorer(classifier, reporter, chunk=7).score(mixed)
    whole = classifier.score(mixed)
    np.testing.assert_allclose(chunked.probs, whole.probs, atol=1e-5)
    np.testing.assert_allclose(chunked.embeddings, whole.embeddings, atol=1e-5)
    assert reporter.items[-1] == len(mixed)
    assert reporter.items == sorted(reporter.items)


class RecordingReporter(NullReporter):
    def __init__(self) -> None:
        self.items: list[int] = []

    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None:
        assert metrics is not None
        self.items.append(int(metrics["items"]))


@pytest.mark.parametrize("vnni", [True, False])
def test_without_vnni_the_down_projections_stay_in_float(
    tiny_bert, corpus, label_names, monkeypatch, vnni
):
    """With 7-bit activations (no VNNI) the feed-forward down projections stay float; with VNNI
    every encoder linear is int8."""
    from torch import nn

    from worker.ml import quantize

    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: vnni)
    texts, _ = corpus
    classifier = _train(tiny_bert, corpus, label_names, AdapterConfig(kind="lora"))
    weights = quantize.ScoringWeights(int8=True)
    weights.build(classifier.model, lambda: classifier.score(texts[:8]))
    kinds = [(site.module.in_features > site.module.out_features if isinstance(site.module,
              nn.Linear) else site.module.get_base_layer().in_features
              > site.module.get_base_layer().out_features, type(rep).__name__)
             for site, rep in zip(weights._sites, weights._replacements, strict=True)]
    down = [name for is_down, name in kinds if is_down]
    assert down and all(name == ("SmoothedInt8Linear" if vnni else "Linear") for name in down)
    assert all(name == "SmoothedInt8Linear" for is_down, name in kinds if not is_down)
