"""Multi-label adapters (issue 19): sigmoid outputs trained with binary cross-entropy on every
adapter kind, per-label thresholds tuned on dev, artifacts that keep them, and the router that
serves them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract.adapter_config import AdapterConfig
from contract.errors import ConfigError, NotSupported
from tests.worker.ml.tiny import LABEL_NAMES, make_multilabel_corpus
from worker.ml.adapter_router import AdapterRouter
from worker.ml.artifacts import load_artifact, read_card, read_meta, save_artifact
from worker.ml.multilabel import label_matrix, report
from worker.ml.training import (
    MAX_POS_WEIGHT,
    TrainConfig,
    _pos_weights,
    label_strata,
    train_classifier,
)

CONFIG = TrainConfig(epochs=8, batch_size=8, lr_adapter=1e-2, lr_head=1e-2, patience=8)


@pytest.fixture(scope="module")
def ml_corpus() -> tuple[list[str], list[list[int]]]:
    return make_multilabel_corpus(84, seed=2)


def _train(tiny_bert: Path, corpus: tuple[list[str], list[list[int]]], adapter: AdapterConfig,
           config: TrainConfig = CONFIG, **kwargs: object):
    texts, sets = corpus
    return train_classifier(
        texts[21:], sets[21:], label_names=LABEL_NAMES, base_model=str(tiny_bert),
        adapter=adapter, config=config, dev=(texts[:21], sets[:21]), multi_label=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_multi_label_lora_learns_label_sets_and_keeps_dev_thresholds(tiny_bert, ml_corpus):
    texts, sets = ml_corpus
    result = _train(tiny_bert, ml_corpus, AdapterConfig(kind="lora"))
    classifier = result.classifier
    assert classifier.multi_label and classifier.thresholds is not None
    metrics = result.dev_metrics
    assert metrics is not None
    assert classifier.thresholds.tolist() == pytest.approx(metrics["thresholds"])
    probs = classifier.predict_proba(texts[:21])
    # independent sigmoids: a two-topic text can have two probabilities above one half
    assert probs.shape == (21, 3) and not np.allclose(probs.sum(axis=1), 1.0)
    predicted = classifier.predict_sets(texts[:21])
    np.testing.assert_array_equal(predicted, (probs >= classifier.thresholds).astype(np.int8))
    again = report(label_matrix(sets[:21], 3), predicted, LABEL_NAMES)
    assert again["macro_f1"] == pytest.approx(metrics["macro_f1"])  # the best epoch restored
    epochs = [h for h in result.history if "dev_micro_f1" in h]
    assert len(epochs) == 8 and all("dev_macro_f1" in h for h in epochs)
    assert epochs[-1]["loss"] < epochs[0]["loss"]  # binary cross-entropy goes down


@pytest.mark.parametrize("adapter", [
    AdapterConfig(kind="lora"),
    AdapterConfig(kind="ia3", targets="attention+mlp"),
    AdapterConfig(kind="bottleneck", placement="serial"),
    AdapterConfig(kind="prompt", num_virtual_tokens=4),
], ids=lambda a: a.kind)
def test_every_adapter_kind_trains_saves_loads_and_serves_multi_label(
    tiny_bert, ml_corpus, adapter, tmp_path
):
    texts, _ = ml_corpus
    result = _train(tiny_bert, ml_corpus, adapter, TrainConfig(epochs=2, batch_size=8))
    assert all(np.isfinite(h["loss"]) for h in result.history if "loss" in h)
    path = save_artifact(result.classifier, tmp_path / "artifact")
    meta = read_meta(path)
    assert meta["task_type"] == "multi_label"
    assert meta["thresholds"] == pytest.approx(result.classifier.thresholds.tolist(), abs=1e-4)
    card = read_card(path)
    assert card["task_type"] == "multi_label"
    assert list(card["thresholds"]) == LABEL_NAMES
    assert [card["thresholds"][n] for n in LABEL_NAMES] == pytest.approx(meta["thresholds"])
    loaded = load_artifact(path, device="cpu")
    assert loaded.multi_label
    np.testing.assert_allclose(loaded.thresholds, meta["thresholds"])
    expected = result.classifier.predict_proba(texts[:6])
    np.testing.assert_allclose(loaded.predict_proba(texts[:6]), expected, atol=1e-5)
    served = AdapterRouter(device="cpu").predict(path, texts[:6])
    np.testing.assert_allclose(served.probabilities, expected, atol=1e-5)
    assert served.thresholds is not None
    np.testing.assert_allclose(served.thresholds, meta["thresholds"])


def test_single_label_artifacts_stay_softmax(tiny_bert, corpus, label_names, tmp_path):
    texts, labels = corpus
    result = train_classifier(texts[:20], labels[:20], label_names=label_names,
                              base_model=str(tiny_bert), adapter=AdapterConfig(),
                              config=TrainConfig(epochs=1, batch_size=8))
    assert not result.classifier.multi_label and result.classifier.thresholds is None
    path = save_artifact(result.classifier, tmp_path / "single")
    assert "task_type" not in read_meta(path) and read_card(path)["thresholds"] is None
    served = AdapterRouter(device="cpu").predict(path, texts[:4])
    assert served.thresholds is None
    np.testing.assert_allclose(served.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_without_dev_the_thresholds_stay_one_half(tiny_bert, ml_corpus):
    texts, sets = ml_corpus
    result = train_classifier(texts, sets, label_names=LABEL_NAMES, base_model=str(tiny_bert),
                              adapter=AdapterConfig(), config=TrainConfig(epochs=1, batch_size=8),
                              multi_label=True)
    assert result.dev_metrics is None
    assert result.classifier.thresholds.tolist() == [0.5, 0.5, 0.5]


def test_the_balanced_sampler_and_class_weighting_work_on_label_sets(tiny_bert, ml_corpus):
    texts, sets = ml_corpus
    config = TrainConfig(epochs=2, batch_size=8, min_steps=12, class_weighting=True)
    result = train_classifier(texts[:14], sets[:14], label_names=LABEL_NAMES,
                              base_model=str(tiny_bert), adapter=AdapterConfig(),
                              config=config, multi_label=True)
    assert {"event": "min_steps_sampling", "steps": 12} in result.history


def test_label_strata_are_each_items_rarest_label_and_none_is_its_own():
    sets = [[0], [0], [0, 1], [1, 2], [], [0]]
    # counts: label 0 x4, label 1 x2, label 2 x1
    assert label_strata(sets, 3) == [0, 0, 1, 2, 3, 0]


def test_positive_weights_are_the_negative_ratio_clipped():
    Y = label_matrix([[0], [0], [0, 1], [2], [2]] + [[]] * 5, 3)
    weights = _pos_weights(Y, torch.device("cpu")).tolist()
    # label 0: 7 negatives / 3 positives; label 1: 9 / 1 -> capped; label 2: 8 / 2
    assert weights == pytest.approx([7 / 3, min(9.0, MAX_POS_WEIGHT), 4.0])
    no_positive = _pos_weights(label_matrix([[0], []], 2), torch.device("cpu")).tolist()
    assert no_positive == pytest.approx([1.0, 1.0])
    assert _pos_weights(label_matrix([[0], [1], [0, 1]], 2), torch.device("cpu")).tolist() == \
        pytest.approx([1.0, 1.0])  # 1/2 negatives per positive: never below 1


def test_wrong_inputs_and_task_mixes_are_refused(tiny_bert, ml_corpus, corpus, label_names):
    texts, sets = ml_corpus
    with pytest.raises(ConfigError, match="label sets"):
        train_classifier(texts[:6], [0, 1, 2, 0, 1, 2], label_names=LABEL_NAMES,
                         base_model=str(tiny_bert), adapter=AdapterConfig(),
                         config=TrainConfig(epochs=1), multi_label=True)
    with pytest.raises(ConfigError, match="label ids"):
        train_classifier(texts[:2], [[0], [5]], label_names=LABEL_NAMES,
                         base_model=str(tiny_bert), adapter=AdapterConfig(),
                         config=TrainConfig(epochs=1), multi_label=True)
    single = train_classifier(corpus[0][:9], corpus[1][:9], label_names=label_names,
                              base_model=str(tiny_bert), adapter=AdapterConfig(),
                              config=TrainConfig(epochs=1))
    with pytest.raises(ConfigError, match="same task type"):
        train_classifier(texts[:6], sets[:6], label_names=LABEL_NAMES,
                         base_model=str(tiny_bert), adapter=AdapterConfig(),
                         config=TrainConfig(epochs=1), multi_label=True,
                         init_from=single.classifier)


def test_badge_embeddings_are_refused_for_multi_label(tiny_bert, ml_corpus):
    texts, sets = ml_corpus
    result = train_classifier(texts[:8], sets[:8], label_names=LABEL_NAMES,
                              base_model=str(tiny_bert), adapter=AdapterConfig(),
                              config=TrainConfig(epochs=1), multi_label=True)
    with pytest.raises(NotSupported, match="single-label"):
        result.classifier.head_gradient_embeddings(texts[:2])
    with pytest.raises(ConfigError, match="thresholds"):
        result.classifier.set_thresholds([0.5, 1.2, 0.3])


def test_a_head_from_scratch_starts_at_each_labels_base_rate(tiny_bert, ml_corpus):
    from worker.ml.classifier import final_head_linear

    texts, sets = ml_corpus
    result = train_classifier(texts[:28], sets[:28], label_names=LABEL_NAMES,
                              base_model=str(tiny_bert), adapter=AdapterConfig(),
                              config=TrainConfig(epochs=1, batch_size=28), multi_label=True)
    assert {"event": "head_init", "source": "label base rates (bias at their log-odds)"} \
        in result.history
    rate = label_matrix(sets[:28], 3).mean(axis=0)  # 12/28 each in this corpus
    bias = final_head_linear(result.classifier.model, 3).bias.detach().numpy()
    np.testing.assert_allclose(bias, np.log(rate / (1 - rate)), atol=0.05)  # one small step
    warm = train_classifier(texts[:28], sets[:28], label_names=LABEL_NAMES,
                            base_model=str(tiny_bert), adapter=AdapterConfig(),
                            config=TrainConfig(epochs=1, batch_size=28), multi_label=True,
                            init_from=result.classifier)
    assert not any(h.get("source", "").startswith("label base rates") for h in warm.history)
