"""Training loop behaviour: best-epoch restore, class weights, progress and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract.adapter_config import AdapterConfig
from contract.errors import Cancelled, ConfigError
from worker.ml.evaluation import evaluate
from worker.ml.progress import RecordingReporter
from worker.ml.training import TrainConfig, _class_weights, min_steps_sampler, train_classifier


def test_early_stopping_keeps_the_best_epoch(tiny_bert, corpus, label_names):
    texts, labels = corpus
    dev_texts, dev_labels = texts[:15], labels[:15]
    result = train_classifier(
        texts[15:],
        labels[15:],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        dev=(dev_texts, dev_labels),
        config=TrainConfig(epochs=6, batch_size=8, patience=2, lr_adapter=5e-3, lr_head=5e-3),
    )
    epochs = [h for h in result.history if "dev_macro_f1" in h]
    assert result.dev_metrics is not None and epochs
    best = max(h["dev_macro_f1"] for h in epochs)
    assert result.dev_metrics["macro_f1"] == pytest.approx(best)
    again = evaluate(dev_labels, result.classifier.predict_proba(dev_texts), label_names)
    assert again["macro_f1"] == pytest.approx(best)  # the best epoch's weights were restored
    if any(h.get("event") == "early_stop" for h in result.history):
        assert len(epochs) < 6


def test_class_weights_are_inverse_frequency():
    weights = _class_weights([0, 0, 0, 1], 3, torch.device("cpu"))
    # n / (classes present * count): 4 / (2 * 3), 4 / (2 * 1); class 2 unseen -> 1
    np.testing.assert_allclose(weights.numpy(), [4 / 6, 2.0, 1.0], rtol=1e-6)


def test_class_weighting_trains(tiny_bert, corpus, label_names):
    texts, labels = corpus
    result = train_classifier(
        texts[:20],
        labels[:20],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=1, batch_size=4, class_weighting=True),
    )
    assert np.isfinite(result.history[-1]["loss"])


def test_progress_is_reported_and_cancellation_stops(tiny_bert, corpus, label_names):
    texts, labels = corpus
    reporter = RecordingReporter()
    train_classifier(
        texts[:16],
        labels[:16],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=2, batch_size=8),
        reporter=reporter,
    )
    steps = [e["step"] for e in reporter.events]
    assert steps == [1, 2, 3, 4] and {e["total"] for e in reporter.events} == {4}
    assert {"loss", "eta_seconds"} <= set(reporter.events[-1]["metrics"])
    with pytest.raises(Cancelled):
        train_classifier(
            texts[:16],
            labels[:16],
            label_names=label_names,
            base_model=str(tiny_bert),
            adapter=AdapterConfig(),
            config=TrainConfig(epochs=2, batch_size=8),
            reporter=RecordingReporter(cancel_after=2),
        )


def test_gradient_accumulation_matches_the_big_batch(tiny_bert, corpus, label_names):
    texts, labels = corpus
    kwargs = dict(
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(dropout=0.0, kind="bottleneck"),
    )
    common = dict(epochs=1, batch_size=8, seed=4)
    one = train_classifier(texts[:16], labels[:16], config=TrainConfig(**common), **kwargs)
    accum = train_classifier(
        texts[:16], labels[:16], config=TrainConfig(**common, grad_accum=2), **kwargs
    )
    assert one.history[-1]["step"] == accum.history[-1]["step"] == 2
    assert one.history[-1]["loss"] == pytest.approx(accum.history[-1]["loss"], rel=0.2)


def test_min_steps_sampler_is_class_balanced_with_replacement():
    labels = [0] * 18 + [1, 2]  # one majority class, two singletons
    batches = min_steps_sampler(labels, batch_size=8, batches=300, rng=np.random.default_rng(0))
    assert len(batches) == 300 and all(len(b) == 8 for b in batches)
    drawn = np.asarray(labels)[np.concatenate(batches)]
    shares = np.bincount(drawn, minlength=3) / drawn.size
    np.testing.assert_allclose(shares, 1 / 3, atol=0.03)  # not 0.9 / 0.05 / 0.05
    assert set(np.concatenate(batches)) <= set(range(20))
    with pytest.raises(ConfigError, match="zero labels"):
        min_steps_sampler([], batch_size=4, batches=1, rng=np.random.default_rng(0))


def test_min_steps_gives_few_labels_enough_optimizer_steps(tiny_bert, corpus, label_names):
    texts, labels = corpus
    reporter = RecordingReporter()
    result = train_classifier(
        texts[:6],
        labels[:6],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=2, batch_size=4, min_steps=10),
        reporter=reporter,
    )
    steps = [e["step"] for e in reporter.events if e.get("phase") == "train"]
    assert max(steps) == 10  # 2 batches an epoch x 2 epochs = 4 without the floor
    assert {"event": "min_steps_sampling", "steps": 10} in result.history
    with pytest.raises(ConfigError, match="min_steps must be an int >= 0"):
        TrainConfig(min_steps=-1)
